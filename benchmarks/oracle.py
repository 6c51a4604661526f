"""Oracle latency benchmark, the same command as `kame bench oracle`.

Example: `python benchmarks/oracle.py --runs 30` (starts the offline SmolLM2 server itself).
"""

import sys

from kame_cli.cli import run

if __name__ == "__main__":
    sys.exit(run(["bench", "oracle", *sys.argv[1:]]))
