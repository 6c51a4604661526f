"""gpu_probe's session figures: transcript lag is measured against the audio, not the session clock."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_probe.py"


def _probe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_probe", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_probe"] = module
    spec.loader.exec_module(module)
    return module


def test_commit_lag_counts_from_the_audio_the_session_has_heard() -> None:
    # Models loaded for 5 s: step 0 (the audio's first 80 ms) ended at t = 5.08 on the session clock.
    steps = [{"type": "StepTiming", "t": 5.08 + 0.08 * k, "step": k, "total_ms": 20.0 + k} for k in range(50)]
    events = [
        *steps,
        {"type": "DeadlineMiss", "t": 5.5},
        {"type": "PartialTranscript", "t": 6.4, "audio_end": 1.0, "committed": "what is"},
        {"type": "PartialTranscript", "t": 6.6, "audio_end": 1.2, "committed": "what is"},  # nothing new
        {"type": "PartialTranscript", "t": 7.0, "audio_end": 1.6, "committed": "what is the"},
        {"type": "FinalTranscript", "t": 8.0, "audio_end": 2.0},
        {"type": "BackendStatus", "component": "stt", "state": "ok", "message": "listening"},
    ]
    stats = _probe().session_stats(events)
    assert stats["steps"] == 50 and stats["deadline_misses"] == 1
    assert stats["commit_lag_p50_s"] == 0.4 and stats["commit_lag_p95_s"] == 0.4
    assert stats["final_after_audio_end_p50_s"] == 1.0
    assert stats["stt_status"] == ["stt: ok: listening"]
