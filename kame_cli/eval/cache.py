"""The `--out` folder: each question x setup's session log, answers and judgments, each file whole.

Layout: `<out>/<question id>/<setup>/` holds `log/` (the session's `--log-dir`, sessions only),
`answers.json` (what each turn's reply said, and its latencies) and `judged.json` (the judge's
ratings). A file exists only once complete (written aside, then renamed), so a run stopped at
any moment (Ctrl-C, a crash) resumes with the next run: what has its file is not done again, a
log without its answers is thrown away and its session run again.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from kame_cli.errors import ConfigError, printable

SETTINGS = "settings.json"
"""At the top of the folder: the session settings its answers were made with."""
ANSWERS = "answers.json"
JUDGED = "judged.json"
LOG = "log"


class EvalDir:
    """Paths in `--out` and the all-or-nothing reads and writes of its files."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def check_settings(self, settings: dict[str, Any]) -> None:
        """Refuse (one line, exit 2) a folder made with other session settings; else create it and
        record them, so a later run cannot mix answers made two ways."""
        path = self.root / SETTINGS
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if isinstance(old, dict) and old != settings:
            changed = ", ".join(
                f"{key} {old.get(key)!r} -> {value!r}"
                for key, value in settings.items()
                if old.get(key) != value
            )
            raise ConfigError(
                f"--out {printable(str(self.root))}: holds answers made with other settings ({changed}): "
                "give a new --out, or the same settings"
            )
        if old is None:
            self.root.mkdir(parents=True, exist_ok=True)
            self._write_file(path, settings)

    def folder(self, qid: str, setup: str) -> Path:
        return self.root / qid / setup

    def log_dir(self, qid: str, setup: str) -> Path:
        return self.folder(qid, setup) / LOG

    def fresh_log_dir(self, qid: str, setup: str) -> Path:
        """An empty log folder for a new session (a stopped run's leftovers removed)."""
        path = self.log_dir(qid, setup)
        if path.exists():
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def read(self, qid: str, setup: str, name: str) -> Any | None:
        """A cached file's JSON, or None if it is not there (or unreadable: then it is done again)."""
        path = self.folder(qid, setup) / name
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def remove(self, qid: str, setup: str, name: str) -> None:
        (self.folder(qid, setup) / name).unlink(missing_ok=True)

    def write(self, qid: str, setup: str, name: str, data: Any) -> None:
        folder = self.folder(qid, setup)
        folder.mkdir(parents=True, exist_ok=True)
        self._write_file(folder / name, data)

    @staticmethod
    def _write_file(path: Path, data: Any) -> None:
        tmp = path.with_name(path.name + ".part")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # readers see the old file or the whole new one, never half
