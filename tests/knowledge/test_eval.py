"""`kame eval --knowledge`: each profile with documents is run with them and without them."""

from __future__ import annotations

from pathlib import Path

import pytest

from kame_cli.cli import run
from kame_cli.eval.run import EvalOptions, Evaluation
from kame_cli.profiles import load_profile

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "knowledge"


def _options(out: Path, *profiles: str) -> EvalOptions:
    # questions, profiles, frontend_only, cascade, judge, voice, out, as_json, figure, model, gap_s,
    # fast, seed, judge_timeout_s, limit
    questions = EXAMPLE / "questions.jsonl"
    args = (questions, list(profiles), False, False, None, "espeak-ng", out, True, None, None, 6.0, True, 0)
    return EvalOptions(*args, 60.0, None, knowledge=True)


def test_a_profile_with_documents_gets_a_twin_without_them(tmp_path: Path) -> None:
    example = str(EXAMPLE / "help-desk.toml")
    evaluation = Evaluation(_options(tmp_path / "out", example, "offline"))
    assert [(s.name, s.kind) for s in evaluation.setups] == [
        ("tandem-help-desk", "tandem"),
        ("tandem-help-desk-no-docs", "tandem"),
        ("tandem-offline", "tandem"),
    ]
    assert not (tmp_path / "out").exists(), "nothing is written before the run"
    from kame_cli.eval.knowledge import write_plain

    write_plain(evaluation._plain_profiles)
    twin = load_profile(evaluation.setups[1].profile)
    original = load_profile(example)
    assert twin.knowledge.documents == () and twin.llm == original.llm and twin.prompt == original.prompt
    assert (twin.stt, twin.frontend, twin.policy) == (original.stt, original.frontend, original.policy)


def test_knowledge_without_a_profile_that_names_documents_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    questions = str(EXAMPLE / "questions.jsonl")
    code = run(
        ["eval", "--knowledge", "-p", "offline", "--questions", questions, "--out", str(tmp_path / "o")]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--knowledge: no --profile names [knowledge] documents" in err
    assert not (tmp_path / "o").exists()
