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
