"""Streaming STT benchmark (same code as `kame bench stt`): commit lag p50/p95, RTF, WER.

.venv/bin/python benchmarks/stt.py [--audio-dir ../shared/audio] [--fast] [--threads 1]
"""

from kame_cli.bench.stt import main

if __name__ == "__main__":
    main()
