"""Oracle latency benchmark, the same command as `kame bench oracle`.

Example: `python benchmarks/oracle.py --runs 30` (starts the offline SmolLM2 server itself).
"""

from kame_cli.bench.oracle import main

if __name__ == "__main__":
    main()
