"""`kame bench echo` refuses options it cannot honour: one line naming the option, exit 2, nothing run."""

from __future__ import annotations

import pytest

from tests.session.conftest import run_kame, stderr_lines


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--duck-db", "50"), ("--duck-db", "40")),  # the ducking depth's range ends at 40 dB
        (("--jobs", "2"), ("--jobs", "--no-stt")),  # side by side only with the STT
    ],
)
def test_an_option_it_cannot_honour_ends_with_one_line_and_exit_2(
    args: tuple[str, ...], named: tuple[str, ...]
) -> None:
    done = run_kame("bench", "echo", "--no-stt", *args, timeout=60)
    assert done.returncode == 2
    [line] = stderr_lines(done.stderr)
    assert all(word in line for word in named), done.stderr
    assert done.stdout == ""
