"""Ctrl-C in a plain Python process (a bench, install.sh) while the bundled GGUF's Q8_0 copy is made
or the local llama.cpp server loads: the KeyboardInterrupt comes at once and nothing is left behind
(no converter, no half copy, no server: both run in their own session, out of the terminal's reach)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[3]

_SCRIPT = """
import json, os, signal, sys, threading, time
from pathlib import Path
import psutil

watched = []

def interrupt_when(marker):
    def watch():
        while not watched:
            watched.extend(c.pid for c in psutil.Process().children() if marker in " ".join(c.cmdline()))
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGINT)
    threading.Thread(target=watch, daemon=True).start()

from kame_cli.backends.oracle.local_server import LocalLlamaServer, bundled_gguf_path
from kame_cli.backends.oracle.requant import q8_0_copy

children = []
try:
    if sys.argv[1] == "convert":
        interrupt_when("--convert")
        q8_0_copy(bundled_gguf_path(), Path(sys.argv[2]))
    else:
        interrupt_when("llama_child")
        LocalLlamaServer(bundled_gguf_path(), "smollm2").start()
    outcome = "finished"
except KeyboardInterrupt:
    outcome = "interrupted"
children = [c.cmdline() for c in psutil.Process().children()]
print(json.dumps({"outcome": outcome, "children": children, "watched": watched}))
"""


def _run(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_ctrl_c_during_the_conversion_leaves_no_converter_and_no_half_copy(tmp_path: Path) -> None:
    result = _run("convert", str(tmp_path))
    assert result["outcome"] == "interrupted" and result["children"] == [], result
    assert [p.name for p in tmp_path.iterdir()] == [".gguf.lock"], "no copy, whole or half"
    assert result["watched"] and not any(_running(pid) for pid in result["watched"])


def test_ctrl_c_while_the_server_loads_leaves_no_server() -> None:
    result = _run("server")
    assert result["outcome"] == "interrupted" and result["children"] == [], result
    assert result["watched"] and not any(_running(pid) for pid in result["watched"])
