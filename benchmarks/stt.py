"""Streaming STT benchmark (same code as `kame bench stt`): streaming vs the same model offline.

.venv/bin/python benchmarks/stt.py [--audio-dir ../shared/audio/real] [--fast] [--json]
    [--every N --offset K] [--beam 1] [--step 0.25] [--set KEY=VALUE]
"""

import sys

from kame_cli.cli import run

if __name__ == "__main__":
    sys.exit(run(["bench", "stt", *sys.argv[1:]]))
