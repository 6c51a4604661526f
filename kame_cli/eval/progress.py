"""Progress over the evaluation's work items: a bar on a terminal, one line per item otherwise."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any, TextIO


class EvalProgress:
    """`advance(label)` after each item; `note(line)` for what the user must read (kept above the bar)."""

    def __init__(self, total: int, out: TextIO) -> None:
        self.total = total
        self.done = 0
        self._out = out
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> EvalProgress:
        if self._out.isatty() and self.total:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(file=self._out),
                transient=True,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("kame eval", total=self.total)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, tb)

    def start(self, label: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=label)

    def advance(self, label: str) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.update(self._task, advance=1)
        else:
            print(f"[{self.done}/{self.total}] {label}", file=self._out, flush=True)

    def note(self, line: str) -> None:
        if self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False)
        else:
            print(line, file=self._out, flush=True)


def stderr_progress(total: int) -> EvalProgress:
    return EvalProgress(total, sys.stderr)
