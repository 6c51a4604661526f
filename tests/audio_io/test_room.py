"""The simulated rooms of `kame bench echo --rooms wide`: each property measured from what the room does."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from kame_cli.audio_io.room import RoomSetup, SimulatedDuplex, shoebox_rir

RATE = 16_000
BLOCK = 1280  # 80 ms


def test_the_classic_rooms_are_drawn_as_before_and_the_wide_ones_reproducibly() -> None:
    # Seed 0 of the rooms the canceller was first tuned on: drawn exactly as when it was tuned.
    classic = RoomSetup.draw(np.random.default_rng(0))
    assert (round(classic.distance_m, 4), round(classic.rt60_s, 4), round(classic.device_delay_s, 4)) == (
        0.3198,
        0.5253,
        0.1843,
    )
    assert classic.speaker_limit is None and classic.noise_snr_db is None and classic.jump_s == 0.0
    assert RoomSetup.draw_wide(np.random.default_rng(7)) == RoomSetup.draw_wide(np.random.default_rng(7))
    wide = [RoomSetup.draw_wide(np.random.default_rng(seed)) for seed in range(100)]
    assert max(s.rt60_s for s in wide) > 0.85
    assert min(s.user_distance_m for s in wide) >= 0.8
    assert any(s.jump_s > 0.02 for s in wide) and any(s.jump_s < -0.02 for s in wide)
    for s in wide:  # the hidden delay never goes below what the timestamps report
        before, after = s.hidden_delays_s
        assert min(before, after) == 0.0 and abs(after - before) == pytest.approx(abs(s.jump_s))


def _decay_rt60(rir: np.ndarray, rate: int) -> float:
    """T30 from the Schroeder backward integral of the impulse response: -5 to -35 dB, times two."""
    energy = np.cumsum(rir[::-1] ** 2)[::-1]
    curve = 10 * np.log10(energy / energy[0])
    t5, t35 = int(np.argmax(curve < -5.0)), int(np.argmax(curve < -35.0))
    return 2.0 * (t35 - t5) / rate


def test_a_wide_room_reverberates_up_to_nine_tenths_of_a_second() -> None:
    setup = RoomSetup(distance_m=1.5, rt60_s=0.9, device_delay_s=0.1, level_db=0.0, dims_m=(9.0, 7.0, 3.5))
    rt60 = _decay_rt60(shoebox_rir(setup, RATE, np.random.default_rng(3)), RATE)
    # The image method decays a little slower than Sabine's formula promises.
    assert 0.8 <= rt60 <= 1.3, rt60


def _run(room: SimulatedDuplex, far: np.ndarray, jump: tuple[int, float] | None = None) -> np.ndarray:
    """Plays `far` through the room, block by block; returns the echo part of what was captured."""
    blocks = far.reshape(-1, BLOCK)

    def playback(out: np.ndarray, frames: int, *_: Any) -> None:
        out[:, 0] = blocks[k] if k < len(blocks) else 0.0

    for k in range(len(blocks) + 4):
        if jump is not None and k == jump[0]:
            room.hidden_delay_s = jump[1]
        room.tick(playback, lambda *_: None)
    return np.concatenate(room.echo_only)


def _room(**kwargs: Any) -> SimulatedDuplex:
    return SimulatedDuplex(
        rate=RATE, block=BLOCK, rir=np.array([1.0]), out_latency_s=0.05, in_latency_s=0.02, **kwargs
    )


def _thd(x: np.ndarray, f0: float) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / RATE)

    def band(f: float) -> float:
        i = int(np.argmin(np.abs(freqs - f)))
        return float(spectrum[i - 3 : i + 4].sum())

    harmonics = sum(band(k * f0) for k in range(2, int(RATE / 2 / f0)))
    return float(np.sqrt(harmonics / band(f0)))


@pytest.mark.parametrize(
    ("limit", "low", "high"), [(None, 0.0, 0.001), (0.3, 0.02, 0.035), (0.15, 0.07, 0.11)]
)
def test_the_loudspeaker_soft_clips_with_the_distortion_its_limit_gives(
    limit: float | None, low: float, high: float
) -> None:
    # A 500 Hz tone at the assistant's level (-18 dBFS RMS), through a speaker that saturates at `limit`.
    t = np.arange(20 * BLOCK) / RATE
    tone = 10 ** (-18 / 20) * np.sqrt(2) * np.sin(2 * np.pi * 500 * t)
    echo = _run(_room(speaker_limit=limit, noise_dbfs=-200.0), tone)
    steady = echo[4 * BLOCK : 4 * BLOCK + RATE // 2]
    assert low <= _thd(steady, 500.0) <= high


def test_the_background_noise_is_a_low_rumble_at_the_level_asked() -> None:
    room = _room(background_dbfs=-36.0, noise_dbfs=-200.0)
    captured: list[np.ndarray] = []
    for _ in range(50):
        room.tick(lambda out, *_: None, lambda indata, *_: captured.append(indata[:, 0].copy()))
    noise = np.concatenate(captured).astype(np.float64)
    # 10 dB below a user whose voice reaches the microphone at -26 dBFS.
    assert 20 * np.log10(np.sqrt(np.mean(noise**2))) == pytest.approx(-36.0, abs=1.0)
    spectrum = np.abs(np.fft.rfft(noise)) ** 2
    freqs = np.fft.rfftfreq(len(noise), 1 / RATE)
    assert spectrum[freqs < 500].sum() > 0.8 * spectrum.sum()  # a fan's rumble, not hiss


def _lag(echo: np.ndarray, far: np.ndarray, lo: int, hi: int) -> int:
    """Where `far[lo:hi]` sits in `echo`, in samples (the cross-correlation's peak)."""
    from scipy.signal import correlate

    c = correlate(echo[lo : hi + RATE // 4], far[lo:hi], mode="valid")
    return int(np.argmax(c))


def test_the_hidden_delay_jump_moves_the_echo_without_the_timestamps_showing_it() -> None:
    far = np.random.default_rng(5).normal(scale=0.1, size=40 * BLOCK)
    room = _room(noise_dbfs=-200.0)
    echo = _run(room, far, jump=(20, 0.045))
    before = _lag(echo, far, 5 * BLOCK, 15 * BLOCK)
    after = _lag(echo, far, 25 * BLOCK, 35 * BLOCK)
    assert (after - before) / RATE == pytest.approx(0.045, abs=1.0 / RATE)
    assert room.out_latency_s == 0.05  # what the output callback's timestamps say did not change


def test_the_bench_counts_the_echo_alone_in_a_noisy_room() -> None:
    from kame_cli.bench.echo import _erle

    # Noise 20 dB under the echo, the same in both runs (same seed): the canceller took the echo
    # down by 30 dB and passed the noise. The microphone-to-output ratio would say 20 dB.
    rng = np.random.default_rng(1)
    echo = [rng.normal(scale=0.1, size=BLOCK) for _ in range(10)]
    noise = [rng.normal(scale=0.01, size=BLOCK) for _ in range(10)]
    left = [e * 10 ** (-30 / 20) for e in echo]
    talk = {
        "raw": [e + n for e, n in zip(echo, noise, strict=True)],
        "clean": [r + n for r, n in zip(left, noise, strict=True)],
    }
    alone = {"raw": noise, "clean": noise}
    total, per_frame = _erle(talk, alone, list(range(10)))
    assert total == pytest.approx(30.0, abs=1.0)
    assert all(f == pytest.approx(30.0, abs=3.0) for f in per_frame)
    # A muted output (quieter than the noise alone) counts as 60 dB, not as a negative residual.
    muted = {"raw": talk["raw"], "clean": [np.zeros(BLOCK) for _ in range(10)]}
    assert _erle(muted, alone, list(range(10)))[0] == pytest.approx(60.0)


def test_an_unknown_room_set_ends_with_one_line_and_exit_2() -> None:
    from tests.session.conftest import run_kame, stderr_lines

    done = run_kame("bench", "echo", "--rooms", "huge", timeout=60)
    assert done.returncode == 2
    expected = "kame: error: --rooms huge: choose one of classic, wide"
    assert stderr_lines(done.stderr) == [expected], done.stderr
    assert done.stdout == ""
