"""The spread of `kame bench echo`'s double-talk ratio: the rooms drawn again, each room's counts paired."""

from __future__ import annotations

import pytest

from kame_cli.bench.interval import ratio_interval

# Per room: (errors in double talk, errors alone), as a 25-room wide set gives them.
_ROOMS = [(6, 7), (3, 0), (3, 1), (6, 4), (4, 0), (5, 2), (7, 9), (9, 3), (8, 7), (1, 0), (5, 6), (0, 0)] + [
    (n, n) for n in (2, 1, 3, 0, 2, 4, 1, 0, 2, 1, 3, 0, 2)
]


def test_rooms_that_all_double_their_errors_leave_no_doubt() -> None:
    assert ratio_interval([(2 * n, n) for n in (1, 3, 2, 5, 4)]) == (2.0, 2.0)


def test_the_interval_holds_the_pooled_ratio_and_narrows_with_more_rooms_like_them() -> None:
    pooled = sum(a for a, _ in _ROOMS) / sum(b for _, b in _ROOMS)
    low, high = ratio_interval(_ROOMS) or (0.0, 0.0)
    assert low < pooled < high
    # Four times the rooms, the same mix: about half the width (1 / sqrt(4)).
    low4, high4 = ratio_interval(_ROOMS * 4) or (0.0, 0.0)
    assert low4 < pooled < high4
    assert 0.35 < (high4 - low4) / (high - low) < 0.65, (low, high, low4, high4)


def test_the_pairs_stay_together() -> None:
    # Each room's errors move with its difficulty: drawn as pairs, the ratio stays 1.5 x however the
    # hard rooms are drawn; drawn apart, it would swing with them.
    rooms = [(3, 2), (30, 20), (3, 2), (60, 40)]
    assert ratio_interval(rooms) == (1.5, 1.5)


def test_it_is_deterministic_for_a_seed_and_refuses_what_has_no_ratio() -> None:
    assert ratio_interval(_ROOMS, seed=3) == ratio_interval(_ROOMS, seed=3)
    assert ratio_interval([(4, 0), (2, 0)]) is None
    assert ratio_interval([]) is None
    with pytest.raises(ValueError, match="level"):
        ratio_interval(_ROOMS, level=1.5)
