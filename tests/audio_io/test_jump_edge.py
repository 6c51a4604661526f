"""The delay-jump finder's range: a jump well inside it is found to the sample; a peak at its edge
is not followed."""

from __future__ import annotations

import numpy as np

from kame_cli.audio_io.echo_path_jump import EchoPathJump
from kame_cli.clock import SAMPLE_RATE

BLOCK = 480


def _found(lag: int) -> list[int]:
    """What the finder reports over 1 s of an echo that comes `lag` samples after the estimate."""
    rng = np.random.default_rng(5)
    estimate = rng.standard_normal(SAMPLE_RATE + 4000).astype(np.float32) * 0.1
    mic = np.roll(estimate, lag)
    finder = EchoPathJump(BLOCK, SAMPLE_RATE)
    found = []
    for start in range(4000, estimate.shape[0] - BLOCK, BLOCK):
        jump = finder.push(mic[start : start + BLOCK], estimate[start : start + BLOCK])
        if jump is not None:
            found.append(jump)
    return found


def test_a_jump_inside_the_range_is_found_and_one_at_its_edge_is_not() -> None:
    assert set(_found(round(0.080 * SAMPLE_RATE))) == {1920}  # 80 ms: the largest a device made
    assert set(_found(-round(0.080 * SAMPLE_RATE))) == {-1920}
    # 84.9 ms, 2 samples inside the 85 ms searched: where every jump found in a room where nothing
    # moved stood (held-out classic rooms 713, 810, 990, 996, 1038), a peak whose flank alone is in range.
    assert _found(2038) == [] and _found(-2038) == []
