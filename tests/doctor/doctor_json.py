"""The documented shape of `kame doctor --json` (docs/troubleshooting.md), as pydantic models.

Written from that page, apart from the code that produces the JSON, so a change of shape on
either side fails the tests.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Scalar = str | int | float | bool | None
CheckName = Literal[
    "python",
    "torch",
    "gpu",
    "memory",
    "frontend",
    "int8",
    "stt-cuda",
    "stt-model",
    "audio-in",
    "audio-out",
    "llm-key",
    "llm",
    "disk",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CheckJson(_Strict):
    name: CheckName
    status: Literal["ok", "warn", "fail"]
    summary: str = Field(min_length=1)
    fix: str | None
    details: dict[str, Scalar | list[str] | dict[str, Scalar]]

    @model_validator(mode="after")
    def _one_line(self) -> CheckJson:
        assert "\n" not in self.summary and "\n" not in (self.fix or "")
        return self


class ProfileJson(_Strict):
    name: str
    path: str


class FrontendJson(_Strict):
    model: str
    device: Literal["cuda", "cpu"]
    dtype: str
    quantize: Literal["none", "int8"]


class CountsJson(_Strict):
    ok: int
    warn: int
    fail: int


class DoctorJson(_Strict):
    kame_doctor: Literal[1]
    profile: ProfileJson
    frontend: FrontendJson
    ok: bool
    exit_code: Literal[0, 1]
    counts: CountsJson
    checks: list[CheckJson] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> DoctorJson:
        statuses = [check.status for check in self.checks]
        assert self.counts == CountsJson(
            ok=statuses.count("ok"), warn=statuses.count("warn"), fail=statuses.count("fail")
        )
        assert self.exit_code == (1 if self.counts.fail else 0) and self.ok == (self.exit_code == 0)
        names = [check.name for check in self.checks]
        assert len(names) == len(set(names)), names
        return self

    def check(self, name: str) -> CheckJson:
        return next(check for check in self.checks if check.name == name)
