"""How sure a pooled ratio of word errors is: a paired bootstrap over the rooms.

`kame bench echo` gives the user's word errors in double talk over their errors alone, pooled over
its rooms. Whether 25 rooms can tell 1.28 x from the 1.2 x target depends on how much the rooms
differ: a few of tiny.en's word flips in one room move the pooled ratio by a tenth. Drawing the rooms
again with replacement, each room's two counts together (the same clip, read with the assistant and
without it), and taking the ratio of each draw gives the spread a fresh set of as many rooms would
show. The percentile interval is enough here: it says how many rooms a claim needs, not a p-value.
"""

from __future__ import annotations

from collections.abc import Sequence

_RESAMPLES = 4000
"""Draws: the interval's ends then move by under 0.01 from one seed to another at 25 rooms."""


def ratio_interval(
    pairs: Sequence[tuple[int, int]], *, level: float = 0.9, resamples: int = _RESAMPLES, seed: int = 0
) -> tuple[float, float] | None:
    """The central `level` interval of sum(a) / sum(b) over `pairs` of (a, b) counts, one pair per
    room, when the rooms are drawn again. Deterministic for a `seed`. None without any b (no ratio);
    a draw whose b are all 0 counts as infinite (a > 0) or 1 (nothing either way)."""
    import numpy as np

    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be between 0 and 1, not {level}")
    counts = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if counts.shape[0] == 0 or counts[:, 1].sum() == 0:
        return None
    draws = np.random.default_rng(seed).integers(0, counts.shape[0], size=(resamples, counts.shape[0]))
    a = counts[draws, 0].sum(axis=1).astype(np.float64)
    b = counts[draws, 1].sum(axis=1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(b > 0, a / np.maximum(b, 1.0), np.where(a > 0, np.inf, 1.0))
    tail = (1.0 - level) / 2
    # No interpolation: an end is a ratio some draw gave (and never inf minus inf).
    low, high = np.quantile(ratios, [tail, 1.0 - tail], method="inverted_cdf")
    return float(low), float(high)
