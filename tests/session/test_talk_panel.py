"""The live panel as a user sees it: `kame talk` in a real terminal (tmux), screen captured while it runs."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

from tests.session.conftest import kame_command, kame_env

SESSION = "kame-panel-test"


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def _live_sections(screen: str) -> dict[str, bool]:
    steps = re.search(r"steps (\d+)", screen)
    requests = re.search(r"requests (\d+)", screen)
    return {
        "user words": bool(re.search(r"You.*\n.*\b(what|capital|city|france)\b", screen, re.I)),
        "oracle requests": bool(requests and int(requests.group(1)) >= 1),
        "oracle tokens": bool(re.search(r"tokens \d+/\d+ consumed", screen)),
        "assistant": "Assistant says" in screen and "…" not in screen.split("Assistant says", 1)[1][:200],
        "step meter": bool(steps and int(steps.group(1)) > 0)
        and bool(re.search(r"p99 \d+\.\d ms / 80 ms", screen)),
        "llm meter": bool(re.search(r"first token \d+ ms", screen)),
        # On a CPU too busy for real time the front-end says so (degraded) instead of ok.
        "status": bool(re.search(r"frontend: (ok|degraded)", screen)) and "stt: ok" in screen,
        "lag meter": bool(re.search(r"Lag +now \d+ ms · max \d+ ms .* dropped \d+ frames", screen)),
    }


def test_panel_shows_every_section_live(question_wav: Path, tmp_path: Path) -> None:
    assert shutil.which("tmux"), "tmux is part of the install (scripts/install.sh)"
    env = kame_env()
    command = " ".join(
        shlex.quote(a) for a in kame_command("talk", "--profile", "offline", "--input", str(question_wav))
    )
    exports = " ".join(
        f"{k}={shlex.quote(env[k])}"
        for k in ("NO_TORCH_COMPILE", "HF_HUB_OFFLINE", "LITELLM_LOCAL_MODEL_COST_MAP")
    )
    subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)
    _tmux(
        "new-session",
        "-d",
        "-s",
        SESSION,
        "-x",
        "120",
        "-y",
        "50",
        f"env TERM=xterm-256color {exports} {command}",
    )
    _tmux("set-option", "-t", SESSION, "remain-on-exit", "on")
    seen: dict[str, bool] = {}
    screens: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not all(seen.values() or [False]):
            screen = _tmux("capture-pane", "-p", "-t", SESSION)
            screens.append(screen)
            dead = _tmux("display-message", "-p", "-t", SESSION, "#{pane_dead}").strip() == "1"
            for name, ok in _live_sections(screen).items():
                seen[name] = seen.get(name, False) or (ok and not dead)
            if dead:
                break
            time.sleep(0.3)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)
    missing = [name for name, ok in seen.items() if not ok]
    assert seen and not missing, (
        f"never seen live: {missing}\n--- last screen ---\n{screens[-1] if screens else ''}"
    )
