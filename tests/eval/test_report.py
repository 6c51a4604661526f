"""The per-setup figures from judged answers: means without the judge's failures, transfer, medians."""

from __future__ import annotations

from kame_cli.eval.answers import TurnAnswer
from kame_cli.eval.judge import Judgment
from kame_cli.eval.report import JudgedAnswer, SetupReport
from kame_cli.eval.setups import Setup, plan_setups

FAILED = Judgment(None, "no rating", "malformed")


def _row(
    qid: str, category: str, voice: Judgment, oracle: Judgment | None, onset: float | None
) -> JudgedAnswer:
    answer = TurnAnswer(
        0,
        "q",
        voice_text="v",
        oracle_text="o",
        onset_s=onset,
        informed_s=None if onset is None else 2 * onset,
    )
    return JudgedAnswer(qid, category, answer, voice, oracle)


def test_tandem_figures() -> None:
    report = SetupReport(Setup("tandem-x", "tandem", "x"))
    report.rows += [
        _row("a", "stem", Judgment(2, ""), Judgment(8, ""), 0.1),
        _row("b", "stem", Judgment(4, ""), FAILED, 0.3),
        _row("c", "law", FAILED, Judgment(6, ""), 0.5),
    ]
    figures = report.figures()
    assert figures["voice_score"] == 3.0 and figures["oracle_score"] == 7.0
    assert figures["transfer"] == round(3 / 7, 3)
    assert figures["onset_p50_s"] == 0.3 and figures["informed_oracle_p50_s"] == 0.6  # nearest rank
    assert figures["answers"] == 3 and figures["judge_failures"] == 2
    assert figures["categories"] == {
        "law": {"voice_score": None, "oracle_score": 6.0},
        "stem": {"voice_score": 3.0, "oracle_score": 8.0},
    }


def test_a_cascade_rating_counts_once_and_the_front_end_has_no_oracle() -> None:
    cascade = SetupReport(Setup("cascade-x", "cascade", "x"))
    cascade.rows += [
        _row("a", "stem", FAILED, FAILED, 1.0),
        _row("b", "stem", Judgment(5, ""), Judgment(5, ""), 2.0),
    ]
    assert cascade.figures()["judge_failures"] == 1 and cascade.figures()["transfer"] == 1.0
    frontend = SetupReport(Setup("frontend", "frontend", "x"))
    frontend.rows.append(_row("a", "stem", Judgment(1, ""), None, 0.0))
    figures = frontend.figures()
    assert figures["oracle_score"] is None and figures["transfer"] is None and figures["voice_score"] == 1.0


def test_setups_in_order_with_unique_names() -> None:
    setups = plan_setups([("offline", "offline"), ("my/p.toml", "p")], frontend_only=True, cascade=True)
    assert [(s.name, s.kind, s.profile) for s in setups] == [
        ("frontend", "frontend", "offline"),
        ("tandem-offline", "tandem", "offline"),
        ("tandem-p", "tandem", "my/p.toml"),
        ("cascade-offline", "cascade", "offline"),
    ]
