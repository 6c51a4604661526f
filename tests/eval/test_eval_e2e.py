"""`kame eval` end to end on the offline profile: random:tiny front-end, tiny.en, SmolLM2 as the
tandem's and the cascade's LLM and as the judge, two short spoken questions (one with a follow-up)
through the front-end alone, the tandem and the cascade; then runs that resume."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kame_cli.eval.answers import answers_from_json
from kame_cli.eval.cache import ANSWERS, JUDGED, EvalDir
from tests.eval.conftest import eval_here, json_line, run_eval_here, write_questions

QUESTIONS = [
    {"id": "q1", "category": "stem", "turns": ["What is two plus two?"], "reference": "Four."},
    {
        "id": "q2",
        "category": "humanities",
        "turns": ["Who wrote Hamlet?", "When did he live?"],
        "reference": ["William Shakespeare.", "From 1564 to 1616."],
    },
]
SETUPS = ("frontend", "tandem-offline", "cascade-offline")
# Six sessions and some twenty judge requests: minutes on two shared cores, more than the default bound.
pytestmark = pytest.mark.timeout(1500)
KEYS = {
    "name", "voice_score", "oracle_score", "transfer", "onset_p50_s", "informed_oracle_p50_s",
    "answers", "judge_failures", "categories",
}  # fmt: skip


@dataclass(frozen=True)
class EvalRun:
    args: tuple[str, ...]
    out: Path
    figure: Path
    result: dict[str, Any]
    stderr: str


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> EvalRun:
    folder = tmp_path_factory.mktemp("eval")
    questions = write_questions(folder / "questions.jsonl", QUESTIONS)
    out, figure = folder / "out", folder / "eval.png"
    # A 4 s gap after each turn, not the default 6: a third fewer frames to step, and room enough for
    # random:tiny's babble and the oracle's first words (the sessions step --fast, not in real time).
    args = (
        "eval", "--questions", str(questions), "--profile", "offline", "--frontend-only", "--cascade",
        "--judge", "offline", "--fast", "--gap", "4", "--out", str(out), "--json", "-o", str(figure),
    )  # fmt: skip
    done = eval_here(*args[1:])
    assert done.returncode == 0, done.stderr
    return EvalRun(args, out, figure, json_line(done.stdout), done.stderr)


def _setups(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in result["setups"]}


def test_every_setup_answers_every_turn_with_every_key(first_run: EvalRun) -> None:
    setups = _setups(first_run.result)
    assert list(setups) == list(SETUPS)
    for name, setup in setups.items():
        assert set(setup) >= KEYS, name
        assert setup["answers"] == 3 and setup["failed_questions"] == []
        assert set(setup["categories"]) == {"stem", "humanities"}
        rated = 3 * (2 if name == "tandem-offline" else 1) - setup["judge_failures"]
        if rated:
            assert 1 <= setup["voice_score"] <= 10
    frontend, tandem, cascade = (setups[name] for name in SETUPS)
    assert frontend["oracle_score"] is None and frontend["transfer"] is None
    assert frontend["informed_oracle_p50_s"] is None and frontend["onset_p50_s"] is not None
    assert cascade["onset_p50_s"] > 0 and cascade["informed_oracle_p50_s"] == cascade["onset_p50_s"]
    assert tandem["kind"] == "tandem" and first_run.result["questions"] == 2


def test_answers_hold_what_was_heard_and_said(first_run: EvalRun) -> None:
    cache = EvalDir(first_run.out)
    heard = answers_from_json(cache.read("q2", "frontend", ANSWERS))
    cascade = answers_from_json(cache.read("q2", "cascade-offline", ANSWERS))
    assert heard is not None and cascade is not None
    assert "hamlet" in heard[0].final_text.lower()  # the real tiny.en heard the spoken question
    assert heard[0].voice_text  # random:tiny babbles, but it speaks
    assert [a.final_text for a in cascade] == [a.final_text for a in heard]
    assert cascade[0].voice_text and cascade[0].voice_text == cascade[0].oracle_text
    assert (first_run.out / "q2" / "tandem-offline" / "log" / "events.jsonl").is_file()
    judged = cache.read("q2", "tandem-offline", JUDGED)
    assert len(judged["voice"]) == len(judged["oracle"]) == 2
    for row in judged["voice"] + judged["oracle"]:
        assert (row["score"] is None) == (row["failure"] is not None)


def test_figure_has_its_panels(first_run: EvalRun) -> None:
    from kame_cli.eval.figure import PANELS, draw

    assert first_run.figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = draw(first_run.result["setups"], "test")
    try:
        assert [ax.get_title(loc="left") for ax in fig.axes] == list(PANELS)
        onset, oracle, categories = fig.axes
        setups = first_run.result["setups"]

        def placed(x: str, y: str) -> int:
            return sum(s[x] is not None and s[y] is not None for s in setups)

        # A point per setup that has both figures (the front-end alone has no oracle at all).
        assert len(onset.collections) == placed("onset_p50_s", "voice_score") >= 1
        assert len(oracle.collections) == placed("informed_oracle_p50_s", "oracle_score") <= 2
        assert len(categories.patches) == 3 * 2  # a bar per setup and category
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def _stamps(out: Path) -> dict[str, int]:
    files = [*out.glob("*/*/*.json"), *out.glob("*/*/log/events.jsonl")]
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in files}


def test_second_runs_resume_without_redoing_finished_work(
    first_run: EvalRun, capfd: pytest.CaptureFixture[str]
) -> None:
    # In this interpreter, as the first run was: the sessions are child processes.
    def rerun() -> tuple[dict[str, Any], str]:
        done = run_eval_here(capfd, *first_run.args[1:])
        assert done.returncode == 0, done.stderr
        return json_line(done.stdout), done.stderr

    out = first_run.out
    before = _stamps(out)
    again, stderr = rerun()
    assert _stamps(out) == before  # nothing run, answered or judged again
    assert again["setups"] == first_run.result["setups"]
    assert "session done" not in stderr and "judged (cached)" in stderr

    # A run stopped mid-way: a session log without its answers, a missing judgment.
    (out / "q1" / "frontend" / ANSWERS).unlink()
    (out / "q1" / "tandem-offline" / JUDGED).unlink()  # one turn: two judgments, not four
    third, _ = rerun()
    after = _stamps(out)
    redone = {name for name in before if after.get(name) != before[name]}
    assert redone == {
        "q1/frontend/answers.json",
        "q1/frontend/log/events.jsonl",  # the session again, in a fresh log
        "q1/frontend/judged.json",  # its answers are new, so is their judgment
        "q1/cascade-offline/answers.json",  # the cascade answers what the new session heard
        "q1/cascade-offline/judged.json",
        "q1/tandem-offline/judged.json",
    }
    assert set(after) == set(before)
    assert [s["answers"] for s in third["setups"]] == [3, 3, 3]
