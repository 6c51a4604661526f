"""Real speech for tests: espeak-ng synthesizes it, numpy/soxr put clips together.

Every function works at a given sample rate (24 kHz by default, the front-end's rate) and returns
mono float32 audio in [-1, 1].
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

DEFAULT_RATE = 24_000
DEFAULT_VOICE = "en-us"
DEFAULT_SPEED = 150
"""Words per minute: a little slower than espeak-ng's 175, which tiny.en hears more reliably."""


def speak(
    text: str,
    path: Path | str,
    rate: int = DEFAULT_RATE,
    voice: str = DEFAULT_VOICE,
    speed: int = DEFAULT_SPEED,
    pitch: int = 50,
) -> Path:
    """Synthesize `text` with espeak-ng into a mono 16-bit WAV at `rate` Hz; returns `path`."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise RuntimeError("espeak-ng is not installed: `apt-get install espeak-ng`")
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "espeak.wav"
        # -z: no pause after the last sentence, so clips join with exactly the silence asked for.
        subprocess.run(
            [espeak, "-v", voice, "-s", str(speed), "-p", str(pitch), "-z", "-w", str(raw), text],
            check=True,
            capture_output=True,
        )
        audio, native_rate = sf.read(raw, dtype="float32", always_2d=False)
    sf.write(path, resample(audio, native_rate, rate), rate, subtype="PCM_16")
    return path


def synthesize(
    text: str, rate: int = DEFAULT_RATE, voice: str = DEFAULT_VOICE, speed: int = DEFAULT_SPEED
) -> np.ndarray:
    """`speak` without a file to keep: the samples at `rate` Hz."""
    with tempfile.TemporaryDirectory() as tmp:
        return load(speak(text, Path(tmp) / "clip.wav", rate=rate, voice=voice, speed=speed), rate)


def load(path: Path | str, rate: int = DEFAULT_RATE) -> np.ndarray:
    """Read any sound file as mono float32 at `rate` Hz (channels averaged, resampled by soxr)."""
    audio, native_rate = sf.read(path, dtype="float32", always_2d=True)
    return resample(audio.mean(axis=1), native_rate, rate)


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if rate_in == rate_out:
        return audio
    return soxr.resample(audio, rate_in, rate_out).astype(np.float32)


def silence(seconds: float, rate: int = DEFAULT_RATE) -> np.ndarray:
    return np.zeros(round(seconds * rate), dtype=np.float32)


def white_noise(seconds: float, rate: int = DEFAULT_RATE, level: float = 0.1, seed: int = 0) -> np.ndarray:
    """Gaussian white noise with RMS `level`, clipped to [-1, 1]."""
    noise = np.random.default_rng(seed).normal(0.0, level, round(seconds * rate))
    return np.clip(noise, -1.0, 1.0).astype(np.float32)


def concat(parts: Sequence[np.ndarray | float], rate: int = DEFAULT_RATE) -> np.ndarray:
    """Join clips in order; a number stands for that many seconds of silence."""
    pieces = [silence(p, rate) if isinstance(p, int | float) else np.asarray(p, np.float32) for p in parts]
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)


def frames(audio: np.ndarray, size: int = 1920) -> Iterator[np.ndarray]:
    """Cut audio into frames of `size` samples (the front-end's 80 ms at 24 kHz), zero-padding the last."""
    audio = np.asarray(audio, dtype=np.float32)
    for start in range(0, len(audio), size):
        frame = audio[start : start + size]
        if len(frame) < size:
            frame = np.pad(frame, (0, size - len(frame)))
        yield frame
