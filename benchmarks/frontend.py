"""Front-end latency benchmark, the same command as `kame bench frontend`.

Example: `python benchmarks/frontend.py --model random:7b --device cuda`.
"""

import sys

from kame_cli.cli import run

if __name__ == "__main__":
    sys.exit(run(["bench", "frontend", *sys.argv[1:]]))
