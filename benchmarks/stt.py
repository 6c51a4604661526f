"""Streaming STT benchmark (same code as `kame bench stt`): commit lag p50/p95, RTF, WER.

.venv/bin/python benchmarks/stt.py [--audio-dir ../shared/audio] [--fast] [--threads 1]
"""

import sys

from kame_cli.cli import run

if __name__ == "__main__":
    sys.exit(run(["bench", "stt", *sys.argv[1:]]))
