"""The doctor's findings: one `Check` per line, rendered as text for people or as JSON for scripts."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["ok", "warn", "fail"]
SCHEMA_VERSION = 1
"""`kame_doctor` in the JSON: bumped when the shape changes (docs/troubleshooting.md)."""

Details = dict[str, Any]
"""JSON scalars, lists of strings, or one level of {name: scalar} (keys: docs/troubleshooting.md)."""


@dataclass(frozen=True)
class Check:
    """One finding: what was checked, how it stands, and the fix when it is not ok."""

    name: str
    status: Status
    summary: str
    fix: str | None = None
    details: Details = field(default_factory=dict)


@dataclass(frozen=True)
class DoctorReport:
    """Every check of one run, with the setup they were made for."""

    profile: dict[str, str]
    frontend: dict[str, str]
    checks: list[Check]

    def count(self, status: Status) -> int:
        return sum(1 for check in self.checks if check.status == status)

    @property
    def exit_code(self) -> int:
        """0 when nothing failed (warnings allowed), 1 otherwise."""
        return 1 if self.count("fail") else 0

    def to_json(self) -> str:
        payload: dict[str, Any] = {
            "kame_doctor": SCHEMA_VERSION,
            "profile": self.profile,
            "frontend": self.frontend,
            "ok": self.exit_code == 0,
            "exit_code": self.exit_code,
            "counts": {status: self.count(status) for status in ("ok", "warn", "fail")},
            "checks": [asdict(check) for check in self.checks],
        }
        return json.dumps(payload)

    def render(self) -> str:
        """One screen: a header, a line per check (and its fix), a verdict."""
        front = self.frontend
        lines = [
            f"kame doctor · profile {self.profile['name']} ({self.profile['path']}) · "
            f"front-end {front['model']} on {front['device']} ({front['dtype']})"
        ]
        width = max(len(check.name) for check in self.checks)
        for check in self.checks:
            lines.append(f"  {check.status:<5} {check.name:<{width}}  {check.summary}")
            if check.fix:
                lines.append(f"  {'':<5} {'':<{width}}  fix: {check.fix}")
        fails, warns = self.count("fail"), self.count("warn")
        if fails:
            verdict = f"{fails} failed, {warns} warning(s): fix the failures before `kame talk`"
        elif warns:
            verdict = f"ready, with {warns} warning(s)"
        else:
            verdict = "ready: every check passed"
        lines.append(verdict)
        return "\n".join(lines)


def gib(value: float) -> str:
    return f"{value / 2**30:.1f} GiB"


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
