"""The judge: ratings parsed strictly; a fake judge on the wire that answers nonsense, refuses or
stalls gives judge failures, never scores, in `kame eval`'s figures."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from kame_cli.eval.answers import TurnAnswer, answers_to_json
from kame_cli.eval.cache import ANSWERS, JUDGED, EvalDir
from kame_cli.eval.judge import Judge, parse_judgment
from kame_cli.profiles import load_profile
from tests.eval.conftest import json_line, run_eval_here, write_questions
from tests.support.llm_server import FaultyOpenAI

RATED = {
    "Rating: 7\nReason: Right city, clearly said.": (7, "Right city, clearly said."),
    "**Rating:** 3\n**Reason:** It names the wrong year.": (3, "It names the wrong year."),
    "Rating: 9/10. Reason: correct.": (9, "correct."),
    "I would give it [[8]].": (8, "I would give it ."),
    "Score: 10 out of 10\nReason: exact": (10, "exact"),
    "rating 2": (2, ""),
}
FAILED = {
    "The answer is good.": "malformed",
    "Rating: eleven": "malformed",
    "Rating: 42": "malformed",
    "Rating: 0\nReason: nothing": "malformed",
    "Rating: 6.5": "malformed",
    "Rating: 3\nRating: 8": "malformed",
    "": "malformed",
    "I'm sorry, but I can't help with grading that.": "refused",
    "As an AI, I will not rate other assistants.": "refused",
}


@pytest.mark.parametrize("text", sorted(RATED))
def test_ratings_are_read_in_their_usual_forms(text: str) -> None:
    judgment = parse_judgment(text)
    assert (judgment.score, judgment.reason) == RATED[text]
    assert judgment.failure is None


@pytest.mark.parametrize("text", sorted(FAILED))
def test_nonsense_and_refusals_are_failures_not_scores(text: str) -> None:
    judgment = parse_judgment(text)
    assert judgment.score is None
    assert judgment.failure == FAILED[text]
    assert "\n" not in judgment.reason


def _rate(api_base: str, profile: Path, answer: str, timeout_s: float = 5.0) -> Any:
    async def go() -> Any:
        judge = Judge(load_profile(str(profile)).llm, api_base, timeout_s)
        try:
            return await judge.rate("What is the capital of France?", answer, reference="Paris.")
        finally:
            await judge.close()

    return asyncio.run(go())


def test_judge_over_the_wire(judge_profile: Any) -> None:
    with FaultyOpenAI(["Rating: 8", "\nReason: ", "Paris is right."]) as server:
        profile = judge_profile(server.api_base)
        good = _rate(server.api_base, profile, "It is Paris.")
        assert (good.score, good.reason, good.failure) == (8, "Paris is right.", None)
        _, _, body = server.requests[-1]
        assert body["temperature"] == 0.0 and "It is Paris." in body["messages"][-1]["content"]
        assert "Paris." in body["messages"][-1]["content"]  # the reference reaches the judge
        silent = _rate(server.api_base, profile, "   ")
        assert (silent.score, silent.failure) == (1, None)
        assert server.completions() == 1  # an empty reply is the floor without asking the judge
        server.pieces = ["I'm sorry, but I cannot evaluate this."]
        assert _rate(server.api_base, profile, "Paris").failure == "refused"
        server.mode, server.pieces = "stall", ["Rating:"]
        stalled = _rate(server.api_base, profile, "Paris", timeout_s=1.0)
        assert (stalled.score, stalled.failure) == (None, "timeout")
        # A rating and a whole reason line are all there is to read: what would follow is not waited for.
        server.pieces = ["Rating: 1", "0/10\nReason: ", "Paris is right.", "\n"]
        # A roomy bound: the reply ends the wait, so a judge that waited on the stream would time out.
        said = _rate(server.api_base, profile, "Paris", timeout_s=30.0)
        assert (said.score, said.reason, said.failure) == (10, "Paris is right.", None)
        # A reason rambling on in one line: read up to what is kept of it, not to the token limit.
        server.pieces = ["Rating: 2\nReason: ", "It is not Paris and ", "not " * 60]
        rambling = _rate(server.api_base, profile, "Lyon", timeout_s=30.0)
        assert (rambling.score, rambling.failure) == (2, None)
        assert len(rambling.reason) == 200 and rambling.reason.startswith("It is not Paris and not not")
        server.pieces = ["Rating: 2\nReason: ", "not " * 20]  # shorter than what is kept: waited for
        assert _rate(server.api_base, profile, "Lyon", timeout_s=1.0).failure == "timeout"
        server.mode = 503
        assert _rate(server.api_base, profile, "Paris").failure == "error"


def _cached_answers(out: Path, setup: str) -> None:
    cache = EvalDir(out)
    answers = [
        TurnAnswer(
            0, "Who wrote Hamlet?", "who wrote hamlet", "shakespeare wrote it", "", "William Shakespeare."
        ),
        TurnAnswer(1, "When did he live?", "when did he live", "long ago", "", "From 1564 to 1616."),
    ]
    cache.write("q1", setup, ANSWERS, answers_to_json(answers))


FAKE_JUDGES: dict[str, tuple[str | int, list[str]]] = {
    "malformed": ("ok", ["Rating: eleven out of ten. Reason: superb"]),
    "out-of-range": ("ok", ["Rating: 42\nReason: good"]),
    "refusal": ("ok", ["I'm sorry, but I can't grade answers."]),
    "timeout": ("stall", ["Rating: "]),
}


@pytest.mark.parametrize("case", sorted(FAKE_JUDGES))
def test_failing_judge_gives_judge_failures_in_the_figures(
    case: str, tmp_path: Path, judge_profile: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    questions = write_questions(
        tmp_path / "q.jsonl",
        [{"id": "q1", "category": "humanities", "turns": ["Who wrote Hamlet?", "When did he live?"]}],
    )
    out = tmp_path / "out"
    mode, pieces = FAKE_JUDGES[case]
    with FaultyOpenAI(pieces) as server:
        server.mode = mode
        profile = judge_profile(server.api_base)
        _cached_answers(out, "tandem-fakejudge")  # the sessions' part is done: only the judge runs
        done = run_eval_here(
            capfd, "--questions", str(questions), "--profile", str(profile), "--out", str(out),
            "--judge-timeout", "1", "--json",
        )  # fmt: skip
        asked = server.completions()
    assert done.returncode == 0, done.stderr
    (setup,) = json_line(done.stdout)["setups"]
    assert setup["name"] == "tandem-fakejudge"
    assert setup["answers"] == 2 and asked == 4
    assert setup["judge_failures"] == 4
    assert setup["voice_score"] is None and setup["oracle_score"] is None and setup["transfer"] is None
    assert setup["categories"] == {"humanities": {"voice_score": None, "oracle_score": None}}
    judged = EvalDir(out).read("q1", "tandem-fakejudge", JUDGED)
    kinds = {row["failure"] for row in judged["voice"] + judged["oracle"]}
    assert kinds == {"timeout" if case == "timeout" else "refused" if case == "refusal" else "malformed"}


def test_another_judge_rates_again_and_other_session_settings_are_refused(
    tmp_path: Path, judge_profile: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    questions = write_questions(
        tmp_path / "q.jsonl",
        [{"id": "q1", "category": "humanities", "turns": ["Who wrote Hamlet?", "When did he live?"]}],
    )
    out = tmp_path / "out"
    with FaultyOpenAI(["Rating: 7\nReason: fine."]) as server:
        profile = judge_profile(server.api_base)
        _cached_answers(out, "tandem-fakejudge")
        args = ["--questions", str(questions), "--profile", str(profile), "--out", str(out), "--json"]
        first = run_eval_here(capfd, *args)
        again = run_eval_here(capfd, *args)
        assert server.completions() == 4  # the second run found every rating cached
        other = tmp_path / "other.toml"
        other.write_text(
            profile.read_text().replace('model = "judge"', 'model = "judge-2"'), encoding="utf-8"
        )
        rejudged = run_eval_here(capfd, *args, "--judge", str(other))
        assert server.completions() == 8  # a judgment is the judge's: another judge rates again
        refused = run_eval_here(capfd, *args, "--gap", "9")
    for done in (first, again, rejudged):
        assert done.returncode == 0, done.stderr
        assert json_line(done.stdout)["setups"][0]["voice_score"] == 7.0
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.splitlines() == [
        f"kame: error: --out {out}: holds answers made with other settings (gap_s 6.0 -> 9.0): "
        "give a new --out, or the same settings"
    ]
