"""The ideal filter of `kame bench echo --ideal`: it leaves what lies beyond its span and nothing else."""

from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve

from kame_cli.audio_io.room import soft_clip
from kame_cli.bench.echo_ideal import ideal_residual
from kame_cli.clock import FRAME_SAMPLES
from tests.session.conftest import run_kame

RATE = 24_000


def _far(seconds: float, seed: int = 0, quiet_s: float = 1.0) -> np.ndarray:
    """Noise with `quiet_s` of silence at each end, as a session's far end starts and ends."""
    x = 0.2 * np.random.default_rng(seed).standard_normal(round(seconds * RATE))
    quiet = round(quiet_s * RATE)
    x[:quiet] = 0.0
    x[-quiet:] = 0.0
    return x


def _path(taps: int, rt60_s: float, seed: int = 1) -> np.ndarray:
    """A room-like echo path: a direct tap, then noise decaying 60 dB over `rt60_s`."""
    t = np.arange(taps) / RATE
    h = 0.05 * np.random.default_rng(seed).standard_normal(taps) * 10 ** (-3 * t / rt60_s)
    h[40] = 0.5
    return h


def _db(part: np.ndarray, whole: np.ndarray) -> float:
    return float(10 * np.log10(np.dot(part, part) / np.dot(whole, whole)))


def test_an_echo_within_the_span_through_the_speakers_curve_is_taken_out_whole() -> None:
    far, path = _far(3.0), _path(2400, 0.1)
    echo = fftconvolve(soft_clip(far, 0.3), path)[: far.shape[0]]
    assert _db(ideal_residual(far, echo, 4800, speaker_limit=0.3), echo) < -60.0
    # Without the curve the best linear filter leaves the distortion: the curve is what makes it ideal.
    assert _db(ideal_residual(far, echo, 4800), echo) > -25.0


def test_what_is_left_is_the_reverberation_beyond_the_span() -> None:
    far, path = _far(4.0), _path(9600, 0.8)
    echo = fftconvolve(far, path)[: far.shape[0]]
    short, long = ideal_residual(far, echo, 2400), ideal_residual(far, echo, 9600)
    # White noise through the path's taps past 100 ms: their share of the path's energy.
    tail_db = _db(path[2400:], path)
    assert abs(_db(short, echo) - tail_db) < 1.0
    assert _db(long, echo) < -60.0


def test_a_jump_of_the_echo_path_is_fitted_on_each_side() -> None:
    far, path = _far(6.0), _path(1200, 0.05)
    split = 36 * FRAME_SAMPLES  # 2.88 s, at a frame boundary, in a pause of the far end
    far[split - RATE // 2 : split + RATE // 2] = 0.0
    moved = np.concatenate([np.zeros(480), path[:-480]])  # 20 ms later
    echo = np.concatenate([fftconvolve(far, path)[:split], fftconvolve(far, moved)[split : far.shape[0]]])
    whole = ideal_residual(far, echo, 2400)
    apart = ideal_residual(far, echo, 2400, split=split)
    assert _db(whole, echo) > -15.0
    assert _db(apart, echo) < -60.0
    assert apart.shape == echo.shape


def test_the_ideal_filter_without_the_stt_is_refused_in_one_line() -> None:
    done = run_kame("bench", "echo", "--no-stt", "--ideal", timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--ideal" in lines[0] and "--no-stt" in lines[0], done.stderr
    assert done.stdout == ""
