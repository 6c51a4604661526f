"""`kame bench echo --jobs N`: rooms run side by side in worker processes give the rows one process gives."""

from __future__ import annotations

import json

from tests.session.conftest import run_kame

# Thread CPU time per frame is the one figure that depends on what else runs.
_TIMING = {"cpu_ms_per_frame", "cpu_ms_max"}


def _figures(row: dict[str, object]) -> dict[str, object]:
    return {key: value for key, value in row.items() if key not in _TIMING}


def test_rooms_in_two_processes_come_back_in_order_as_one_process_makes_them() -> None:
    both = run_kame("bench", "echo", "--seeds", "2", "--jobs", "2", "--json", timeout=900)
    assert both.returncode == 0, both.stderr[-2000:]
    summary = json.loads(both.stdout)
    rows = summary["seeds"]
    assert [row["seed"] for row in rows] == [0, 1]
    # The second room alone, in a process that ran nothing before it.
    alone = run_kame("bench", "echo", "--seed", "1", "--seeds", "1", "--json", timeout=900)
    assert alone.returncode == 0, alone.stderr[-2000:]
    assert _figures(rows[1]) == _figures(json.loads(alone.stdout)["seeds"][0])
    # One summary over both rooms.
    errors = sum(row["doubletalk_errors"] for row in rows), sum(row["clean_errors"] for row in rows)
    assert summary["doubletalk_ratio"] == (round(errors[0] / errors[1], 3) if errors[1] else None)
    assert "2 processes" in both.stderr
