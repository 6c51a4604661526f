"""Damaged session logs through `kame plot` and `kame replay`: one line and exit 2, or a picture.

A log folder is something users share and download. The test damages a complete log (written by
the log writer's own codec, with real speech as input.wav) a few hundred ways: lines cut, fields of
the wrong JSON type (generated from the event types themselves, so new fields are covered), numbers
that are not finite, huge and deeply nested lines, unknown events, WAVs that are not audio, FIFOs
and planted links. Each case runs in-process through the CLI's one error path (`kame_cli.cli.run`);
a handful run as real processes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import soundfile
from matplotlib.image import imread

from kame_cli.cli import run
from kame_cli.session.logfile import EVENT_TYPES
from tests.support.session_log import write_session_log

ROOT = Path(__file__).resolve().parent.parent
Damage = Callable[[Path], None]
"""Changes a copy of the good log folder in place."""


class Raw(str):
    """JSON text written into a line as it is (Python's json reads NaN and Infinity; a lone
    surrogate can only be written as an escape)."""


def _bad_values(hint: Any) -> Iterator[tuple[str, Any]]:
    """JSON values a field of type `hint` must not accept, each with a name."""
    arms = [hint]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        arms = [a for a in typing.get_args(hint) if a is not type(None)]
    else:
        yield "null", None
    (kind,) = arms
    origin = typing.get_origin(kind) or kind
    if origin in (int, float):
        yield "string", "soon"
        yield "bool", True
        yield "list", [1]
        yield "object", {"a": 1}
        yield "nan", Raw("NaN")
        yield "infinity", Raw("Infinity")
        yield "minus_infinity", Raw("-Infinity")
        yield "overflow", Raw("1e999")
        yield "huge", Raw("1e300")
        if origin is int:
            yield "fraction", 0.5
            yield "beyond_int64", 2**70
    elif origin is str:
        yield "int", 5
        yield "list", ["a"]
        yield "lone_surrogate", Raw('"a\\udce9"')
    elif origin is bool:
        yield "string", "yes"
        yield "int", 1
    elif origin is Literal:
        yield "unknown_choice", "no-such-choice"
        yield "int", 3
    elif origin is tuple:
        yield "int", 5
        if typing.get_args(kind)[0] is str:  # `Retrieval.sources`
            yield "numbers", [1]
            yield "nested", [["a"]]
            return
        yield "strings", ["a"]
        yield "fractions", [1.5]
        yield "nan_inside", Raw("[1, NaN]")


def _raw(value: Any) -> str:
    return value if isinstance(value, Raw) else json.dumps(value)


def _replace_line(index: int, text: str | bytes) -> Damage:
    def damage(folder: Path) -> None:
        path = folder / "events.jsonl"
        lines = path.read_bytes().split(b"\n")
        lines[index] = text if isinstance(text, bytes) else text.encode()
        path.unlink()  # a hard link to the good log: write a new file, not into it
        path.write_bytes(b"\n".join(lines))

    return damage


def _field_value(line: str, name: str, value: Any) -> str:
    record = json.loads(line)
    record[name] = "\x00PLACEHOLDER\x00"
    return json.dumps(record).replace(json.dumps("\x00PLACEHOLDER\x00"), _raw(value))


def _line_cases(lines: list[str]) -> Iterator[tuple[str, Damage, bool]]:
    """(name, damage, drawn): `drawn` when the damage leaves a readable log."""
    firsts: dict[str, int] = {}
    for index, line in enumerate(lines):
        firsts.setdefault(json.loads(line)["type"], index)
    assert set(firsts) == set(EVENT_TYPES), set(EVENT_TYPES) - set(firsts)
    for name, index in firsts.items():
        line = lines[index]
        hints = typing.get_type_hints(EVENT_TYPES[name])
        for field in dataclasses.fields(EVENT_TYPES[name]):
            for label, value in _bad_values(hints[field.name]):
                yield (
                    f"{name}.{field.name}.{label}",
                    _replace_line(index, _field_value(line, field.name, value)),
                    False,
                )
        for cut in (1, len(line) // 3, len(line) // 2, len(line) - 1):
            yield f"{name}.cut_at_{cut}", _replace_line(index, line[:cut]), False
        record = json.loads(line)
        yield (
            f"{name}.no_type",
            _replace_line(index, json.dumps({k: v for k, v in record.items() if k != "type"})),
            False,
        )
        yield f"{name}.type_int", _replace_line(index, json.dumps({**record, "type": 7})), False
        yield f"{name}.invalid_utf8", _replace_line(index, line.encode()[:-2] + b"\xff\xfe}"), False
        yield f"{name}.raw_control_char", _replace_line(index, line[:-1] + ', "x": "a\x01b"}'), False
    middle = len(lines) // 2
    for label, text in (
        ("list", "[1, 2, 3]"),
        ("number", "42"),
        ("string", '"event"'),
        ("null", "null"),
        ("true", "true"),
        ("empty_object", "{}"),
        ("bare_nan", "NaN"),
        ("huge_line", json.dumps({"type": "FrontendText", "t": 1.0, "step": 1, "text": "a" * (3 << 20)})),
        ("deep_nesting", "[" * 50_000 + "]" * 50_000),
        ("not_json", "kame was here"),
    ):
        yield f"line.{label}", _replace_line(middle, text), False
    # Damage a reader must survive: unknown events (a newer kame), an older layout, blank lines.
    newer = json.dumps({"type": "FromTheFuture", "t": 1e300, "payload": [1, {"a": None}]})
    yield "line.unknown_event", _replace_line(middle, newer), True
    older = json.dumps({"type": "OracleChunk", "t": 2.0, "generation": 1})
    yield "line.older_layout", _replace_line(middle, older), True
    yield "line.blank", _replace_line(middle, "   "), True
    # Finite numbers far from a session's, and a long text: drawn, however odd the picture.
    for name, field, value in (
        ("StepTiming", "t", -1e11),
        ("StepTiming", "step", 10**12),
        ("FrontendText", "text", "word " * 200_000),
    ):
        record = {**json.loads(lines[firsts[name]]), field: value}
        yield f"{name}.{field}.extreme", _replace_line(firsts[name], json.dumps(record)), True
    for name in ("FrontendText", "FinalTranscript", "OracleChunk"):  # "$" is a dollar, ESC a glyph
        record = json.loads(lines[firsts[name]])
        record["text"] = "$\\sqrt{ 5$ _^ \x1b[2J 東京 \u202e" + record["text"]
        yield f"{name}.text_markup", _replace_line(firsts[name], json.dumps(record)), True


def _wav_bytes(samples: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    import io

    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def _file_damage(name: str, how: str) -> Damage:
    def damage(folder: Path) -> None:
        path = folder / name
        good = path.read_bytes()
        path.unlink()
        if how == "text":
            path.write_text("this is not audio\n" * 20)
        elif how == "empty":
            path.write_bytes(b"")
        elif how == "cut_header":
            path.write_bytes(good[:30])
        elif how == "random":
            path.write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
        elif how == "nan_samples":
            samples = np.zeros(4800, dtype=np.float32)
            samples[100] = np.nan
            path.write_bytes(_wav_bytes(samples, 24_000, "FLOAT"))
        elif how == "rate_1hz":
            path.write_bytes(_wav_bytes(np.zeros(100, dtype=np.float32), 1))
        elif how == "folder":
            path.mkdir()
        elif how == "fifo":
            os.mkfifo(path)
        elif how == "link_to_dev_zero":
            path.symlink_to("/dev/zero")
        elif how == "dangling_link":
            path.symlink_to(folder / "no-such-file")
        elif how == "link_to_itself":
            path.symlink_to(path)

    return damage


def _folder_cases() -> Iterator[tuple[str, Damage, bool]]:
    hows = (
        "text",
        "empty",
        "cut_header",
        "random",
        "nan_samples",
        "rate_1hz",
        "folder",
        "fifo",
        "link_to_dev_zero",
        "dangling_link",
        "link_to_itself",
    )
    for name in ("input.wav", "output.wav", "events.jsonl"):
        for how in hows:
            if name == "events.jsonl" and how in ("nan_samples", "rate_1hz"):
                continue
            yield f"{name}.{how}", _file_damage(name, how), False
        yield f"{name}.missing", lambda folder, name=name: (folder / name).unlink(), name == "output.wav"


def _all_cases(good: Path) -> dict[str, tuple[Damage, bool]]:
    lines = (good / "events.jsonl").read_text(encoding="utf-8").splitlines()
    cases = {name: (damage, drawn) for name, damage, drawn in _line_cases(lines)}
    cases.update({name: (damage, drawn) for name, damage, drawn in _folder_cases()})
    return cases


@pytest.fixture(scope="module")
def good_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_session_log(tmp_path_factory.mktemp("good") / "log")


def _one_line(code: int, err: str) -> str:
    assert code == 2, err
    assert err.endswith("\n") and err.count("\n") == 1, err
    line = err[:-1]
    assert line.startswith("kame: error: ") and line.isprintable() and "Traceback" not in line, repr(line)
    return line


def _copy(good: Path, target: Path) -> Path:
    target.mkdir()
    for item in good.iterdir():
        if item.name != "timeline.png":
            os.link(item, target / item.name)  # hard links: each case replaces the file it damages
    return target


@pytest.mark.timeout(240)
def test_every_damaged_log_is_one_line_or_a_picture(good_log: Path, tmp_path: Path, capfd) -> None:
    cases = _all_cases(good_log)
    assert len(cases) >= 300, len(cases)
    failures = []
    drawn = 0
    for index, (name, (damage, readable)) in enumerate(cases.items()):
        folder = _copy(good_log, tmp_path / f"case{index}")
        damage(folder)
        picture = tmp_path / f"case{index}.png"
        try:
            code = run(["plot", str(folder), "-o", str(picture)])
            captured = capfd.readouterr()
            if readable:
                assert code == 0 and captured.err == "", captured.err
                assert imread(picture)[..., :3].std() > 0.05, "a blank picture"
                drawn += 1
                continue
            line = _one_line(code, captured.err)
            assert not picture.exists(), "nothing written on exit 2"
            assert str(folder) in line, line
            if not name.startswith("output.wav"):  # replay does not read the assistant's audio
                code = run(["replay", str(folder), "--profile", "offline"])
                assert _one_line(code, capfd.readouterr().err) == line, "plot and replay read logs alike"
        except AssertionError as err:
            failures.append(f"{name}: {err}")
        finally:
            shutil.rmtree(folder)
    assert not failures, f"{len(failures)} of {len(cases)}:\n" + "\n".join(failures[:25])
    assert drawn == sum(readable for _, readable in cases.values()) >= 4


# --- what plot writes -----------------------------------------------------------------------------


def test_plot_never_writes_through_a_link_planted_in_the_log(good_log: Path, tmp_path: Path, capfd) -> None:
    folder = _copy(good_log, tmp_path / "log")
    precious = tmp_path / "precious.txt"
    precious.write_text("the user's own file\n")
    (folder / "timeline.png").symlink_to(precious)
    line = _one_line(run(["plot", str(folder)]), capfd.readouterr().err)
    assert "symbolic link" in line and "timeline.png" in line, line
    assert precious.read_text() == "the user's own file\n"
    assert (folder / "timeline.png").is_symlink()


@pytest.mark.parametrize("kind", ["folder", "link", "fifo", "missing_folder"])
def test_plot_output_that_cannot_be_written_is_one_line(
    good_log: Path, tmp_path: Path, kind: str, capfd
) -> None:
    target = tmp_path / "out.png"
    if kind == "folder":
        target.mkdir()
    elif kind == "link":
        target.symlink_to(tmp_path / "elsewhere.png")
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        target = tmp_path / "no-such-folder" / "out.png"
    line = _one_line(run(["plot", str(good_log), "-o", str(target)]), capfd.readouterr().err)
    assert f"--output {target}" in line, line
    assert not (tmp_path / "elsewhere.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if kind == "missing_folder" else ["out.png"])


def test_plot_on_a_full_disk_is_one_line_exit_1_and_leaves_nothing(good_log: Path, tmp_path: Path) -> None:
    # A file size limit makes the write fail as a full disk does (EFBIG, like ENOSPC): a real
    # process, SIGXFSZ ignored as a shell's `ulimit -f` does not.
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))\n"
        "from kame_cli.cli import main\n"
        "sys.argv = ['kame', 'plot', sys.argv[1], '-o', sys.argv[2]]\n"
        "main()\n"
    )
    target = tmp_path / "out.png"
    target.write_bytes(b"an earlier picture")
    done = subprocess.run(
        [sys.executable, "-c", script, str(good_log), str(target)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and "File too large" in done.stderr and "Traceback" not in done.stderr
    assert target.read_bytes() == b"an earlier picture", "the old file stays whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"], "no scratch file left"


# --- a few real processes -------------------------------------------------------------------------


def test_in_real_processes_damaged_logs_are_one_line_and_exit_2(good_log: Path, tmp_path: Path) -> None:
    cases = _all_cases(good_log)
    for index, name in enumerate(("line.list", "StepTiming.t.nan", "input.wav.text", "events.jsonl.fifo")):
        folder = _copy(good_log, tmp_path / f"case{index}")
        cases[name][0](folder)
        for command in (["plot", str(folder)], ["replay", str(folder), "--profile", "offline"]):
            done = subprocess.run(
                [sys.executable, "-m", "kame_cli.cli", *command],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=120,
            )
            line = _one_line(done.returncode, done.stderr)
            assert str(folder) in line, line
        assert not (folder / "timeline.png").exists()
