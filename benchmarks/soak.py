"""10-minute real-time `kame talk` file session (random:tiny + tiny.en + SmolLM2): misses, xruns, RSS.

Usage: .venv/bin/python benchmarks/soak.py [--minutes 10] [--profile offline]
"""

import sys

from kame_cli.cli import run

if __name__ == "__main__":
    sys.exit(run(["bench", "soak", *sys.argv[1:]]))
