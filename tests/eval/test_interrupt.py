"""Ctrl-C during `kame eval`: the session and the evaluation stop, one line, nothing half-written, and
the templates its sessions fork from are gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from kame_cli.session.template import TEMPLATES_ENV
from tests.eval.conftest import write_questions


def test_ctrl_c_mid_session_stops_everything_and_leaves_no_partial_answers(tmp_path: Path) -> None:
    questions = write_questions(
        tmp_path / "q.jsonl", [{"id": "q1", "category": "stem", "turns": ["What is two plus two?"]}]
    )
    out = tmp_path / "out"
    env = dict(os.environ, NO_TORCH_COMPILE="1", HF_HUB_OFFLINE="1", LITELLM_LOCAL_MODEL_COST_MAP="True")
    env.pop(TEMPLATES_ENV, None)  # the run starts its own templates, and must end them too
    args = [
        "eval",
        "--questions",
        str(questions),
        "--profile",
        "offline",
        "--frontend-only",
        "--out",
        str(out),
    ]
    # Its own process group, as a terminal's foreground job: Ctrl-C reaches kame and its session.
    child = subprocess.Popen(
        [sys.executable, "-m", "kame_cli.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    log = out / "q1" / "frontend" / "log" / "events.jsonl"
    deadline = time.monotonic() + 240
    while not (log.is_file() and log.stat().st_size > 0) and child.poll() is None:
        assert time.monotonic() < deadline, "the first session never started"
        time.sleep(0.05)
    templates = [
        p for p in psutil.Process(child.pid).children() if "kame_cli.session.template_proc" in p.cmdline()
    ]
    assert len(templates) == 2  # its sessions' children are forks of these
    os.killpg(child.pid, signal.SIGINT)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 130, stderr
    assert stderr.splitlines()[-1] == "kame: interrupted" and "Traceback" not in stderr
    assert not list(out.glob("*/*/*.json")) and not list(out.glob("*/*/*.part"))
    try:
        os.killpg(child.pid, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive, "a process of the run is still alive after it exited"
    assert not any(t.is_running() and t.status() != psutil.STATUS_ZOMBIE for t in templates)
