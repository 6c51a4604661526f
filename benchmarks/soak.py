"""10-minute real-time `kame talk` file session (random:tiny + tiny.en + SmolLM2): misses, xruns, RSS.

Usage: .venv/bin/python benchmarks/soak.py [--minutes 10] [--profile offline]
"""

from kame_cli.bench.soak import main

if __name__ == "__main__":
    main()
