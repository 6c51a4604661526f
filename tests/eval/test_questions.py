"""The question files: the bundled set, and bad files refused in one line (exit 2, nothing written)."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from kame_cli.cli import run
from kame_cli.eval.questions import bundled_questions, load_questions


def test_bundled_set_covers_three_categories_with_follow_ups() -> None:
    questions = load_questions(bundled_questions())
    assert 35 <= len(questions) <= 50
    counts = collections.Counter(q.category for q in questions)
    assert set(counts) == {"stem", "humanities", "reasoning"}
    assert min(counts.values()) >= 10
    assert all(len(q.turns) == 2 for q in questions)
    assert all(len(q.references) == 2 for q in questions)


def test_a_user_file_with_one_turn_and_no_reference(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text(
        '{"id": "a1", "category": "Law", "turns": ["  What is  a tort? "]}\n\n'
        '{"id": "a2", "category": "law", "turns": ["Q?", "And then?"], "reference": "R"}\n',
        encoding="utf-8",
    )
    first, second = load_questions(path)
    assert (first.id, first.category, first.turns, first.reference(0)) == (
        "a1",
        "law",
        ("What is a tort?",),
        None,
    )
    assert second.reference(0) == "R" and second.reference(1) is None


BAD = {
    "not-json": ('{"id": "q1", "category": "stem", "turns": ["x"]}\n{oops}\n', "line 2: not JSON"),
    "not-an-object": ('["q1", "stem"]\n', "line 1: a JSON object is needed"),
    "unknown-key": (
        '{"id": "q1", "category": "stem", "turns": ["x"], "answer": "y"}\n',
        "unknown key 'answer'",
    ),
    "no-turns": ('{"id": "q1", "category": "stem"}\n', "turns must be a list"),
    "empty-turns": ('{"id": "q1", "category": "stem", "turns": []}\n', "one or more questions"),
    "blank-turn": ('{"id": "q1", "category": "stem", "turns": ["  "]}\n', "non-empty strings"),
    "path-id": ('{"id": "../q1", "category": "stem", "turns": ["x"]}\n', "id must be a short name"),
    "no-category": ('{"id": "q1", "turns": ["x"]}\n', "category must be"),
    "twice": (
        '{"id": "q1", "category": "a", "turns": ["x"]}\n{"id": "q1", "category": "a", "turns": ["y"]}\n',
        "used twice",
    ),
    "long-reference": (
        '{"id": "q1", "category": "a", "turns": ["x"], "reference": ["a", "b"]}\n',
        "more answers",
    ),
    "empty": ("\n\n", "no question in it"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_question_file_is_one_line_and_exit_2(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    content, expected = BAD[case]
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    out = tmp_path / "out"
    code = run(["eval", "--questions", str(path), "--profile", "offline", "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("kame: error: ") and expected in lines[0] and "bad.jsonl" in lines[0]
    assert not out.exists()


def test_missing_and_binary_files_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    binary = tmp_path / "b.jsonl"
    binary.write_bytes(b"\xff\xfe\x00bad")
    for path, expected in ((tmp_path / "none.jsonl", "no such file"), (binary, "not UTF-8")):
        code = run(["eval", "--questions", str(path), "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert code == 2 and len(err.splitlines()) == 1 and expected in err
    assert not (tmp_path / "out").exists()


def test_missing_recording_names_the_file_to_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"id": "q1", "category": "a", "turns": ["x", "y"]}\n', encoding="utf-8")
    voices = tmp_path / "voices"
    voices.mkdir()
    (voices / "q1-1.wav").write_bytes(b"")
    code = run(
        ["eval", "--questions", str(questions), "--voice", str(voices), "--out", str(tmp_path / "out")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "no q1-2.wav" in err and len(err.splitlines()) == 1
