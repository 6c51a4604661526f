"""Spoken questions laid into one session's input WAV, for `kame bench tandem` and `kame eval`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

RATE = 24_000
_LEAD_S = 0.5


@dataclass(frozen=True)
class Question:
    name: str
    text: str
    audio: np.ndarray
    """24 kHz mono float32, the speech alone."""


def session_input(questions: Sequence[Question], gap_s: float, path: Path) -> list[tuple[float, float, str]]:
    """Write the session's input (lead silence, then each question followed by `gap_s` of silence);
    returns each question's span (start, end of its gap, text) in seconds of that audio."""
    import numpy as np
    import soundfile as sf

    parts = [np.zeros(round(_LEAD_S * RATE), np.float32)]
    spans = []
    at = _LEAD_S
    for q in questions:
        length = len(q.audio) / RATE
        spans.append((at, at + length + gap_s, q.text))
        parts += [q.audio.astype(np.float32), np.zeros(round(gap_s * RATE), np.float32)]
        at += length + gap_s
    sf.write(path, np.concatenate(parts), RATE, subtype="PCM_16")
    return spans
