"""Channels for `kame bench stt --channel`: audio the STT was not tuned on, made on the fly.

- `clean`: the clip as recorded.
- `telephone`: down to 8 kHz, a phone band-pass (300-3400 Hz), GSM 06.10 full-rate (the lossy codec
  of the classic mobile call) through sox, and back up to the bench's rate.
- `noisy`: babble made of other clips of the same set (three talkers, seeded choice and offsets)
  mixed under the speech at a given SNR (speech power over babble power).
- `fast`: sox `tempo` (pitch kept) at a seeded factor in [1.25, 1.4].

Each is a pure function of the audio, the seed and the clip's index, so a rerun gives the same
samples. sox is a command-line tool (scripts/install.sh installs it); numpy does the mixing.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    import numpy as np

Channel = Literal["clean", "telephone", "noisy", "fast"]
CHANNELS: tuple[str, ...] = get_args(Channel)
PHONE_RATE = 8_000
PHONE_BAND_HZ = (300, 3400)
TEMPO_RANGE = (1.25, 1.4)
BABBLE_TALKERS = 3


def _sox(audio: np.ndarray, rate: int, out_args: Sequence[str], effects: Sequence[str]) -> np.ndarray:
    """`audio` through sox: written as a float WAV, out as `out_args` with `effects`, read back."""
    import soundfile as sf

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.wav", Path(tmp) / "out.wav"
        sf.write(src, audio, rate, subtype="FLOAT")
        subprocess.run(
            ["sox", "-q", "-D", str(src), *out_args, str(dst), *effects], check=True, capture_output=True
        )
        result, _ = sf.read(dst, dtype="float32", always_2d=False)
    return result


def telephone(audio: np.ndarray, rate: int) -> np.ndarray:
    """`audio` as a phone call delivers it, at `rate` again."""
    import numpy as np
    import soxr

    low, high = PHONE_BAND_HZ
    narrow = soxr.resample(audio.astype(np.float32), rate, PHONE_RATE).astype(np.float32)
    # Headroom before the 16-bit codec, so the band-pass's ripple cannot clip.
    peak = float(np.max(np.abs(narrow))) if len(narrow) else 0.0
    narrow = narrow * (0.9 / peak if peak > 0.9 else 1.0)
    with tempfile.TemporaryDirectory() as tmp:
        import soundfile as sf

        src, gsm, back = Path(tmp) / "in.wav", Path(tmp) / "call.gsm", Path(tmp) / "back.wav"
        sf.write(src, narrow, PHONE_RATE, subtype="FLOAT")
        subprocess.run(
            ["sox", "-q", "-D", str(src), "-r", str(PHONE_RATE), str(gsm), "sinc", f"{low}-{high}"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            ["sox", "-q", "-D", str(gsm), "-e", "floating-point", str(back)], check=True, capture_output=True
        )
        decoded, _ = sf.read(back, dtype="float32", always_2d=False)
    return soxr.resample(decoded, PHONE_RATE, rate).astype(np.float32)


def tempo_factor(seed: int, index: int) -> float:
    """The `fast` channel's tempo for clip `index` under `seed`."""
    import numpy as np

    return float(np.random.default_rng([seed, index]).uniform(*TEMPO_RANGE))


def fast(audio: np.ndarray, rate: int, factor: float) -> np.ndarray:
    """`audio` spoken `factor` times faster, pitch kept (sox `tempo -s`: tuned for speech)."""
    import numpy as np

    return _sox(audio, rate, ["-e", "floating-point"], ["tempo", "-s", f"{factor:.4f}"]).astype(np.float32)


def power(audio: np.ndarray) -> float:
    import numpy as np

    return float(np.mean(np.square(audio.astype(np.float64)))) if len(audio) else 0.0


def babble(others: Sequence[np.ndarray], length: int, seed: int, index: int) -> np.ndarray:
    """`BABBLE_TALKERS` of `others` (seeded choice), each looped from a seeded offset to `length`
    samples, scaled to the same power and summed."""
    import numpy as np

    rng = np.random.default_rng([seed, index, 1])
    voiced = [o for o in others if power(o) > 0]
    if not voiced:
        raise ValueError("the noisy channel needs at least one other clip with sound to make babble")
    picks = rng.choice(len(voiced), size=min(BABBLE_TALKERS, len(voiced)), replace=False)
    mix = np.zeros(length, np.float64)
    for pick in picks:
        talker = voiced[int(pick)].astype(np.float64)
        start = int(rng.integers(len(talker)))
        looped = np.resize(np.roll(talker, -start), length)
        mix += looped / np.sqrt(power(talker))
    return mix


def noisy(
    audio: np.ndarray, others: Sequence[np.ndarray], snr_db: float, seed: int, index: int
) -> np.ndarray:
    """`audio` with babble of `others` under it at `snr_db` (speech power over babble power)."""
    import numpy as np

    noise = babble(others, len(audio), seed, index)
    gain = np.sqrt(power(audio) / (power(noise) * 10 ** (snr_db / 10))) if power(noise) else 0.0
    mixed = audio.astype(np.float64) + gain * noise
    peak = float(np.max(np.abs(mixed))) if len(mixed) else 0.0
    # One gain for the whole mix keeps the SNR where it was put.
    return (mixed * (0.99 / peak if peak > 0.99 else 1.0)).astype(np.float32)


def apply(
    channel: str, pool: Sequence[np.ndarray], index: int, rate: int, seed: int, snr_db: float
) -> np.ndarray:
    """Clip `index` of `pool` (speech only, no padding) through `channel`; `noisy` takes its babble
    from the other clips of `pool`, the whole set, so a subset hears the same babble."""
    speech = pool[index]
    if channel == "clean":
        return speech
    if channel == "telephone":
        return telephone(speech, rate)
    if channel == "fast":
        return fast(speech, rate, tempo_factor(seed, index))
    if channel == "noisy":
        return noisy(speech, [o for j, o in enumerate(pool) if j != index], snr_db, seed, index)
    raise ValueError(f"unknown channel {channel!r}: one of {', '.join(CHANNELS)}")
