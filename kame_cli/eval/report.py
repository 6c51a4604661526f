"""The figures per setup: mean voice and oracle scores, their ratio, per-category means, latencies."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kame_cli.eval.answers import TurnAnswer
from kame_cli.eval.judge import Judgment
from kame_cli.eval.setups import Setup


@dataclass(frozen=True)
class JudgedAnswer:
    """One turn's reply in one setup with its two ratings (oracle None where the setup has none)."""

    qid: str
    category: str
    answer: TurnAnswer
    voice: Judgment
    oracle: Judgment | None


@dataclass
class SetupReport:
    """What the table and `--json` show for one setup."""

    setup: Setup
    rows: list[JudgedAnswer] = field(default_factory=list)
    failed_questions: list[str] = field(default_factory=list)
    """Questions whose session or answers could not be had this run (retried by the next one)."""

    def figures(self) -> dict[str, Any]:
        voice = [r.voice.score for r in self.rows if r.voice.score is not None]
        oracle = [r.oracle.score for r in self.rows if r.oracle is not None and r.oracle.score is not None]
        voice_mean, oracle_mean = _mean(voice), _mean(oracle)
        failures = sum(r.voice.failure is not None for r in self.rows)
        if self.setup.kind == "tandem":  # a cascade's oracle is its voice: one rating, counted once
            failures += sum(r.oracle is not None and r.oracle.failure is not None for r in self.rows)
        categories: dict[str, dict[str, float | None]] = {}
        for category in sorted({r.category for r in self.rows}):
            mine = [r for r in self.rows if r.category == category]
            categories[category] = {
                "voice_score": _round(_mean([r.voice.score for r in mine if r.voice.score is not None])),
                "oracle_score": _round(
                    _mean(
                        [r.oracle.score for r in mine if r.oracle is not None and r.oracle.score is not None]
                    )
                ),
            }
        return {
            "name": self.setup.name,
            "kind": self.setup.kind,
            "profile": self.setup.profile,
            "voice_score": _round(voice_mean),
            "oracle_score": _round(oracle_mean),
            "transfer": _round(voice_mean / oracle_mean) if voice_mean is not None and oracle_mean else None,
            "onset_p50_s": _p50([r.answer.onset_s for r in self.rows]),
            "informed_oracle_p50_s": _p50([r.answer.informed_s for r in self.rows]),
            "informed_reached": sum(r.answer.informed_s is not None for r in self.rows),
            "answers": len(self.rows),
            "judge_failures": failures,
            "categories": categories,
            "failed_questions": list(self.failed_questions),
        }


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _p50(values: Sequence[float | None]) -> float | None:
    from kame_cli.stats import percentile

    present = [v for v in values if v is not None]
    return round(percentile(present, 50), 3) if present else None


def _cell(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:.2f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def print_table(setups: Sequence[dict[str, Any]], say: Callable[[str], None]) -> None:
    """The human table: one line per setup, then its per-category means."""
    header = (
        f"{'setup':<22} {'voice':>6} {'oracle':>6} {'transfer':>8} {'onset p50':>10} "
        f"{'informed p50':>12} {'answers':>7} {'judge fails':>11}"
    )
    say(header)
    for s in setups:
        say(
            f"{s['name']:<22} {_cell(s['voice_score']):>6} {_cell(s['oracle_score']):>6} "
            f"{_cell(s['transfer']):>8} {_cell(s['onset_p50_s'], ' s'):>10} "
            f"{_cell(s['informed_oracle_p50_s'], ' s'):>12} {s['answers']:>7} {s['judge_failures']:>11}"
        )
        parts = [
            f"{name} {_cell(c['voice_score'])}/{_cell(c['oracle_score'])}"
            for name, c in s["categories"].items()
        ]
        if parts:
            say(f"  by category (voice/oracle): {', '.join(parts)}")
        if s["failed_questions"]:
            say(f"  not run this time (rerun to retry): {', '.join(s['failed_questions'])}")
