"""The residual-echo suppressor steps back for the user only where a speech detector hears a voice."""

from __future__ import annotations

import numpy as np

from kame_cli.audio_io.residual_echo import ResidualEchoSuppressor

BLOCK = 480  # 20 ms at 24 kHz


def _around_a_burst(voice: bool | None) -> tuple[float, float]:
    """Output power (dB) over the 0.4 s before and the 0.36 s after a 60 ms burst of residual far above
    its estimate (what a filter thrown off for a moment leaves, or the user's first syllable), past
    the burst's own blocks (the output is one block late)."""
    rng = np.random.default_rng(5)
    sup = ResidualEchoSuppressor(BLOCK, double_talk=True)
    floor = lambda: (1e-5 * rng.standard_normal(BLOCK)).astype(np.float32)  # noqa: E731
    for _ in range(25):  # the room's quiet: the noise estimate
        sup.process(floor(), np.zeros(BLOCK, np.float32), 1.0, learn=False, voice=voice)
    out: list[np.ndarray] = []
    for k in range(150 + 3 + 20):
        y = (0.1 * rng.standard_normal(BLOCK)).astype(np.float32)  # the echo estimate
        leak = 1.5 if 150 <= k < 153 else 0.3  # the residual: steady ~10 dB under it, but the burst
        e = (leak * y + floor()).astype(np.float32)
        out.append(sup.process(e, y, 1.0, learn=True, voice=voice))
    before, after = (np.concatenate(blocks).astype(np.float64) for blocks in (out[130:150], out[155:]))
    return float(10 * np.log10(np.mean(before**2))), float(10 * np.log10(np.mean(after**2)))


def test_a_residual_burst_heard_as_no_voice_does_not_release_the_suppression() -> None:
    # The suppressor's own detector takes the burst for the user (the error far above the residual it
    # expects) and holds its gentle gain (-6 dB at most) for 0.5 s. Where the speech detector heard no
    # voice the residual after it stays suppressed as deep as before the burst; without a detector, or
    # with one that heard a voice, the gentle gain is kept, as for a user's syllable.
    residual_db = 10 * np.log10(0.3**2 * 0.1**2)  # -30.5 dBFS
    suppressed, gated = _around_a_burst(False)
    assert suppressed <= residual_db - 8.0, suppressed  # echo alone: ~-60.5 dBFS
    assert gated <= suppressed + 1.0, (gated, suppressed)  # as deep after the burst as before it
    before, ungated = _around_a_burst(None)
    assert before == suppressed
    assert ungated >= gated + 8.0, (ungated, gated)  # the gentle gain
    assert _around_a_burst(True) == (before, ungated)


def _fan_and_residual(rng: np.random.Generator, blocks: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A fan's noise at -50 dBFS throughout, and the assistant's echo estimate with a residual ~10 dB
    under it in bursts of 1 s with 0.3 s pauses (an assistant's sentences): (errors, estimates)."""
    errors, estimates = [], []
    for k in range(blocks):
        noise = (10 ** (-50 / 20) * rng.standard_normal(BLOCK)).astype(np.float32)
        talking = k >= 50 and (k - 50) % 65 < 50
        y = (0.1 * rng.standard_normal(BLOCK) if talking else np.zeros(BLOCK)).astype(np.float32)
        errors.append((0.3 * y + noise).astype(np.float32))
        estimates.append(y)
    return errors, estimates


def test_a_suppressed_residual_leaves_the_rooms_noise_and_an_untouched_bin_gets_no_fill() -> None:
    # Where the suppressor takes the residual down, noise of random phase fills the bins back near the
    # room's noise: a background silenced far under it laid the residual's fragments bare, and the STT
    # read them as words (held-out wide room 856: "so, I see", after a jump of the echo's delay).
    # The room's noise is a minimum per bin, 15-20 dB under its mean; half of it left the background
    # there (~-60 dBFS here). The fill never makes a bin louder than it came in: with no echo, the
    # input passes as is.
    rng = np.random.default_rng(7)
    errors, estimates = _fan_and_residual(rng, 50 + 6 * 65)
    sup = ResidualEchoSuppressor(BLOCK, double_talk=True)
    out = [
        sup.process(e, y, 1.0, learn=bool(y.any()), voice=False)
        for e, y in zip(errors, estimates, strict=True)
    ]
    noise_db = -50.0
    late = [k for k in range(50 + 3 * 65, len(out) - 1) if (k - 50) % 65 in range(5, 45)]  # mid-sentence
    suppressed = np.concatenate([out[k + 1] for k in late]).astype(np.float64)  # one block late
    level = float(10 * np.log10(np.mean(suppressed**2)))
    assert noise_db - 8.0 <= level <= noise_db, level  # ~-54 dBFS: the residual (-30.5) gone, the fan kept

    quiet = ResidualEchoSuppressor(BLOCK, double_talk=True)
    fan = [e for e, y in zip(errors, estimates, strict=True) if not y.any()]
    passed = [quiet.process(e, np.zeros(BLOCK, np.float32), 1.0, learn=False, voice=False) for e in fan]
    np.testing.assert_allclose(np.concatenate(passed[1:]), np.concatenate(fan[:-1]), atol=1e-7)
