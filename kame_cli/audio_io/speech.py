"""Speech made by espeak-ng, for the benches, `kame eval` and the first-run demo's questions."""

from __future__ import annotations

import subprocess
from io import BytesIO
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

RATE = 24_000


def espeak(text: str, voice: str, speed: int, rate: int = RATE) -> np.ndarray:
    """espeak-ng speech for `text` at `rate` Hz."""
    import soundfile as sf

    from kame_cli.audio_io.resampling import resampled

    out = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-z", "--stdout", text], check=True, capture_output=True
    ).stdout
    audio, native = sf.read(BytesIO(out), dtype="float32")
    return resampled(audio, native, rate)
