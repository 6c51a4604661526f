"""Hostile input ends cleanly: one line on stderr, exit code 2, no traceback, nothing left behind.

A fuzz of broken profiles (generated from the config types' declarations, so new fields are
covered) and broken WAV files runs in-process through the CLI's one error path (`kame_cli.cli.run`),
so hundreds of cases take seconds; a few real subprocesses check the same from the outside.
"""

from __future__ import annotations

import math
import struct
import subprocess
import sys
import threading
import tomllib
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import soundfile
import tomli_w

from kame_cli.audio_io.files import FileSource
from kame_cli.cli import run
from kame_cli.errors import AudioFileError
from kame_cli.profiles.keys import Key, arms, keys_of
from kame_cli.profiles.profile import section_types

ROOT = Path(__file__).resolve().parent.parent
GOOD = {"llm": {"provider": "openai", "model": "gpt-4.1-nano"}}


def _one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    assert err.endswith("\n") and err.count("\n") == 1, err
    line = err[:-1]
    assert line.startswith("kame: error: ") and line.isprintable(), repr(line)
    return line


# --- broken profiles, generated from the config types' own declarations -------------------------


def _bad_values(key: Key) -> Iterator[tuple[str, Any]]:
    """Values no setting of this type and these constraints accepts, each with a name."""
    kinds = {typing.get_origin(a) or a for a in arms(key.hint)}
    numeric = kinds & {int, float}
    if numeric:
        yield "string", "12"
        yield "list", [1]
        yield "table", {"a": 1}
        yield "bool", True
        for bound in ("ge", "gt"):
            if bound in key.bounds:
                yield f"below_{bound}", key.bounds[bound] - 1
        for bound in ("le", "lt"):
            if bound in key.bounds:
                yield f"above_{bound}", key.bounds[bound] + 1
        if float in kinds:
            yield "inf", math.inf
            yield "minus_inf", -math.inf
            yield "nan", math.nan
        else:
            yield "float_for_int", 2.5
            yield "beyond_int64", 2**70
    if kinds & {str, Path}:
        yield "int", 5
        yield "list_for_string", ["a"]
        yield "huge", "x" * 70_000
        if key.nonempty:
            yield "blank", "   "
    if bool in kinds:
        yield "string_for_bool", "yes"
        yield "int_for_bool", 1
    if Literal in kinds:
        yield "unknown_literal", "no-such-mode"
        yield "unknown_choice", "no-such-choice\n\x1b[31m"
        yield "int_for_literal", 3
    if kinds & {dict, typing.Mapping}:
        yield "int_for_table", 5
        yield "secret_inside", {"api_key": "sk-abcdefghijklmnop1234"}
    if key.table is not None:
        yield "int_for_table", 5
        yield "unknown_inner_key", {"no_such_key": 1}


def _profile_cases() -> Iterator[tuple[str, str]]:
    for section, cls in section_types().items():
        for key in keys_of(cls):
            for name, value in _bad_values(key):
                tables = {k: dict(v) for k, v in GOOD.items()}
                tables.setdefault(section, {})[key.name] = value
                yield f"{section}.{key.name}.{name}", tomli_w.dumps(tables)
            yield (
                f"{section}.{key.name}.unknown_neighbour",
                tomli_w.dumps({**GOOD, section: {**GOOD.get(section, {}), f"{key.name}_x": 1}}),
            )
    good = tomli_w.dumps(GOOD)
    yield "description_int", "description = 5\n" + good
    yield "section_not_a_table", good + "stt = 5\n"
    yield "unknown_table", good + "[sst]\nstep_s = 1.0\n"
    yield "no_llm", 'description = "x"\n'
    yield "duplicate_key", good + 'model = "again"\n'
    yield "invalid_utf8", 'description = "\xff\xfe"\n' + good
    yield "nul_byte", good + 'x = "\x00"\n'
    yield "deep_arrays", good + "[llm.extra]\nx = " + "[" * 3000 + "]" * 3000 + "\n"
    yield "deep_tables", good + "[llm.extra]\nx = " + "{a = " * 2000 + "1" + "}" * 2000 + "\n"
    yield "ansi_table", good + '["\\u001b[2J"]\nx = 1\n'
    # Every prefix of a valid profile that no longer parses as TOML.
    text = tomli_w.dumps({**GOOD, "stt": {"step_s": 0.25, "device": "cpu"}, "policy": {"max_restarts": 3}})
    for cut in range(1, len(text)):
        try:
            tomllib.loads(text[:cut])
        except tomllib.TOMLDecodeError:
            yield f"truncated_at_{cut}", text[:cut]


PROFILE_CASES = dict(_profile_cases())


def test_the_profile_fuzz_is_large_and_covers_every_table() -> None:
    assert len(PROFILE_CASES) >= 300, len(PROFILE_CASES)
    assert {name.split(".")[0] for name in PROFILE_CASES} >= set(section_types())


@pytest.mark.timeout(240)
def test_every_broken_profile_is_one_line_naming_the_file(tmp_path: Path, capsys) -> None:
    threads_before = threading.active_count()
    failures = []
    for name, text in PROFILE_CASES.items():
        path = tmp_path / f"{name.replace('/', '_')}.toml"
        if isinstance(text, str) and "\xff" in text:
            path.write_bytes(text.encode("latin-1"))
        else:
            path.write_text(text, encoding="utf-8")
        code = run(["profiles", "check", str(path), "--no-online"])
        captured = capsys.readouterr()
        try:
            line = _one_line_error(code, captured.err)
            assert line.startswith(f"kame: error: {path}: "), line
            assert "sk-abcdefghijklmnop1234" not in captured.err + captured.out
        except AssertionError as err:
            failures.append(f"{name}: {err}")
    assert not failures, "\n".join(failures[:20])
    assert threading.active_count() == threads_before


# --- broken WAV files -----------------------------------------------------------------------------


def _wav_bytes(samples: np.ndarray, rate: int = 24_000, subtype: str = "PCM_16") -> bytes:
    import io

    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def _with_header(raw: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(raw)
    out[offset : offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    return bytes(out)


def _wav_cases() -> Iterator[tuple[str, bytes]]:
    tone = (0.3 * np.sin(np.arange(12_000) * 2 * np.pi * 220 / 24_000)).astype(np.float32)
    good = _wav_bytes(tone)
    # Cut inside the header, and inside the audio (the header then promises more than is there).
    for cut in (0, 3, 4, 11, 12, 20, 35, 40, 43, 44, 46, 100, 1000, 10_000, len(good) - 2):
        yield f"truncated_{cut}", good[:cut]
    yield "wrong_magic", b"RIFX" + good[4:]
    yield "not_wave", good[:8] + b"AVI " + good[12:]
    yield "text", b"this is not audio at all\n" * 10
    yield "random_bytes", np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    yield "zeros", bytes(4000)
    # fmt chunk fields: format tag, channels, rate, bits.
    for tag in (0, 0x9999):
        yield f"format_tag_{tag}", _with_header(good, 20, "<H", tag)
    yield "zero_channels", _with_header(good, 22, "<H", 0)
    for bits in (0, 64):
        yield f"bits_{bits}", _with_header(good, 34, "<H", bits)
    yield "fmt_chunk_size_huge", _with_header(good, 16, "<I", 0xFFFFFF)
    for rate in (0, 1, 100, 3_999, 768_001, 2**31 - 1, 2**32 - 1):
        yield f"rate_{rate}", _with_header(_with_header(good, 24, "<I", rate), 28, "<I", (rate * 2) % 2**32)
    yield "no_samples", _wav_bytes(np.zeros(0, dtype=np.float32))
    # Float files holding NaN or infinity, early, late, in one channel of two.
    for subtype in ("FLOAT", "DOUBLE"):
        for value, label in ((np.nan, "nan"), (np.inf, "inf"), (-np.inf, "minus_inf")):
            for where in (0, 6_000, 11_999):
                samples = tone.copy()
                samples[where] = value
                yield f"{subtype.lower()}_{label}_at_{where}", _wav_bytes(samples, subtype=subtype)
        stereo = np.stack([tone, tone], axis=1)
        stereo[100, 1] = np.nan
        yield f"{subtype.lower()}_nan_right_channel", _wav_bytes(stereo, subtype=subtype)


WAV_CASES = dict(_wav_cases())


@pytest.fixture(scope="module")
def no_llm_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("profile") / "cpu.toml"
    path.write_text(
        '[llm]\nprovider = "openai"\nmodel = "m"\n'
        '[frontend]\nmodel = "random:tiny"\ndevice = "cpu"\n[stt]\nmodel = "tiny.en"\ndevice = "cpu"\n'
    )
    return path


@pytest.mark.timeout(120)
def test_every_broken_wav_is_one_line_before_anything_loads(tmp_path: Path, no_llm_profile, capfd) -> None:
    assert len(WAV_CASES) >= 50, len(WAV_CASES)
    threads_before = threading.active_count()
    failures = []
    for name, data in WAV_CASES.items():
        path = tmp_path / f"{name}.wav"
        path.write_bytes(data)
        code = run(
            ["talk", "--profile", str(no_llm_profile), "--no-llm", "--no-ui", "--fast", "--input", str(path)]
        )
        captured = capfd.readouterr()
        try:
            line = _one_line_error(code, captured.err)
            assert f"input audio file '{path}'" in line, line
        except AssertionError as err:
            failures.append(f"{name}: {err}")
    assert not failures, "\n".join(failures[:20])
    assert threading.active_count() == threads_before


def test_nan_samples_are_refused_naming_the_time(tmp_path: Path) -> None:
    samples = np.zeros(24_000, dtype=np.float32)
    samples[12_000] = np.nan
    path = tmp_path / "nan.wav"
    soundfile.write(path, samples, 24_000, subtype="FLOAT")
    with pytest.raises(AudioFileError, match=r"NaN or infinite samples \(first at 0\.500 s\)"):
        FileSource(path)


def test_an_mp3_is_read_without_its_decoders_lines(tmp_path: Path, capfd) -> None:
    # libmpg123 writes straight to file descriptor 2 (94 lines for one real mp3 before this fix).
    tone = (0.3 * np.sin(np.arange(48_000) * 2 * np.pi * 440 / 24_000)).astype(np.float32)
    path = tmp_path / "tone.mp3"
    soundfile.write(path, tone, 24_000, format="MP3")
    capfd.readouterr()
    source = FileSource(path, paced=False)
    frames = list(source.frames())
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
    assert len(frames) == source.frame_count == 25
    assert np.abs(np.concatenate(frames)).max() > 0.1  # the tone is there, not silence


# --- the command line ---------------------------------------------------------------------------

USAGE = {
    "unknown_flag": (["talk", "--no-such-flag"], "No such option: --no-such-flag", "kame talk --help"),
    "seed_not_a_number": (["talk", "--seed", "abc"], "Invalid value for '--seed'", "kame talk --help"),
    "seed_too_big": (["talk", "--seed", "1" + "0" * 26], "less than or equal to 4294967295", "kame talk"),
    "seed_negative": (["talk", "--seed", "-1"], "greater than or equal to 0", "kame talk --help"),
    "bench_steps_zero": (["bench", "frontend", "--steps", "0"], "'--steps'", "kame bench frontend --help"),
    "unknown_command": (["no-such-command"], "No such command", "kame --help"),
    "missing_value": (["talk", "--profile"], "requires an argument", "kame talk --help"),
}


@pytest.mark.parametrize("case", sorted(USAGE))
def test_usage_errors_are_one_line_pointing_at_the_help(case: str, capsys) -> None:
    argv, what, help_hint = USAGE[case]
    code = run(argv)
    line = _one_line_error(code, capsys.readouterr().err)
    assert what in line and f"(see {help_hint}" in line, line


def test_an_empty_profile_name_is_refused_not_the_default(capsys) -> None:
    line = _one_line_error(run(["profiles", "show", ""]), capsys.readouterr().err)
    assert '--profile ""' in line


# --- a few real processes -------------------------------------------------------------------------


def _kame(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kame_cli.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_in_a_real_process_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    deep = tmp_path / "deep.toml"
    deep.write_text(PROFILE_CASES["deep_arrays"])
    nan = tmp_path / "nan.wav"
    nan.write_bytes(WAV_CASES["float_nan_at_6000"])
    for args, what in (
        (["profiles", "check", str(deep), "--no-online"], "nested too deeply"),
        (["talk", "--seed", "abc"], "Invalid value for '--seed'"),
        (["talk", "--profile", "offline", "--no-llm", "--input", str(nan)], "NaN or infinite samples"),
    ):
        result = _kame(*args)
        line = _one_line_error(result.returncode, result.stderr)
        assert what in line, line


@pytest.mark.parametrize(
    "args", [["profiles", "list"], ["profiles", "show", "offline"], ["doctor"], ["--help"]]
)
def test_stdout_a_closed_pipe_is_one_line_and_exit_1(args: list[str]) -> None:
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before kame writes: `kame profiles list | true`
    try:
        done = subprocess.run(
            [sys.executable, "-m", "kame_cli.cli", *args],
            cwd=ROOT,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("kame: error: standard output was closed"), done.stderr


def test_doctor_on_a_cache_that_cannot_be_written_says_the_copy_is_not_made(
    tmp_path: Path, monkeypatch
) -> None:
    from kame_cli.doctor.llm import check_llm
    from kame_cli.profiles import load_profile

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    monkeypatch.setenv("KAME_CACHE_DIR", str(blocker / "kame"))  # no copy there, and none can be made
    checks, _ = check_llm(load_profile("offline"))
    (llm,) = [c for c in checks if c.name == "llm"]
    assert llm.status == "ok" and "Q4_1.gguf" in llm.summary
    assert "made at the first session" not in llm.summary
    assert f"cache {blocker / 'kame'} cannot be written" in llm.summary and "KAME_CACHE_DIR" in llm.summary
    monkeypatch.setenv("KAME_CACHE_DIR", str(tmp_path / "new-cache"))  # writable: the copy will be made
    checks, _ = check_llm(load_profile("offline"))
    assert any("made at the first session" in c.summary for c in checks)


def test_an_input_file_name_that_is_not_utf8_is_read(tmp_path: Path) -> None:
    import os

    name = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9-fr\xe8re.wav"))  # an old Latin-1 archive
    tone = (0.3 * np.sin(np.arange(24_000) * 2 * np.pi * 220 / 24_000)).astype(np.float32)
    name.write_bytes(_wav_bytes(tone))
    source = FileSource(name, paced=False)
    assert len(list(source.frames())) == source.frame_count == 13


def test_a_log_folder_name_that_is_not_utf8_is_plotted(tmp_path: Path, capfd) -> None:
    import os

    from tests.support.session_log import write_session_log

    folder = Path(os.fsdecode(os.fsencode(tmp_path) + b"/s\xe9ance"))
    write_session_log(tmp_path / "log").rename(folder)
    assert run(["plot", str(folder)]) == 0, capfd.readouterr().err
    out, err = capfd.readouterr()
    assert err == "" and out == f"timeline: {tmp_path}/s\\udce9ance/timeline.png\n"
    assert (folder / "timeline.png").stat().st_size > 10_000


def test_a_pipe_as_input_is_refused_up_front_without_blocking(tmp_path: Path) -> None:
    import os

    wav = tmp_path / "q.wav"
    wav.write_bytes(_wav_bytes(np.zeros(24_000, dtype=np.float32)))
    fifo = tmp_path / "no-writer.fifo"
    os.mkfifo(fifo)
    log_dir = tmp_path / "log"
    common = ["--profile", "offline", "--no-llm", "--no-ui", "--log-dir", str(log_dir)]
    # A FIFO nobody writes to (it used to block), and a shell's <(cat q.wav) with a writer (it used
    # to pass the check, start both processes, write a log, then fail).
    for command in (
        [sys.executable, "-m", "kame_cli.cli", "talk", *common, "--input", str(fifo)],
        [
            "bash",
            "-c",
            f'exec "$0" -m kame_cli.cli talk {" ".join(common)} --input <(cat {wav})',
            sys.executable,
        ],
    ):
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
        line = _one_line_error(done.returncode, done.stderr)
        assert "is a pipe or device, not a file" in line and "save the audio to a file" in line, line
        assert not log_dir.exists(), "nothing written on exit 2"


@pytest.mark.parametrize("kind", ["link", "fifo"])
def test_output_never_written_through_a_link_or_into_a_fifo(
    tmp_path: Path, no_llm_profile, kind, capfd
) -> None:
    import os

    wav = tmp_path / "q.wav"
    wav.write_bytes(_wav_bytes(np.zeros(24_000, dtype=np.float32)))
    precious = tmp_path / "precious.txt"
    precious.write_text("the user's own file\n")
    out = tmp_path / "out.wav"
    if kind == "link":
        out.symlink_to(precious)  # planted in a shared folder
    else:
        os.mkfifo(out)  # nobody reads it: opening it to write would block
    argv = ["talk", "--profile", str(no_llm_profile), "--no-llm", "--no-ui", "--fast", "--input", str(wav)]
    line = _one_line_error(run([*argv, "--output", str(out)]), capfd.readouterr().err)
    assert f"output file '{out}' is a " in line, line
    assert precious.read_text() == "the user's own file\n"


def test_a_non_utf8_recording_as_its_own_echo_reference_is_read(tmp_path: Path) -> None:
    import os

    from kame_cli.audio_io.aec_wiring import EchoSpec, input_channel

    name = Path(os.fsdecode(os.fsencode(tmp_path) + b"/\xe9cho.wav"))
    tone = (0.3 * np.sin(np.arange(24_000) * 2 * np.pi * 220 / 24_000)).astype(np.float32)
    name.write_bytes(_wav_bytes(np.stack([tone, tone], axis=1)))
    assert input_channel(name, EchoSpec(reference=name)) == 0  # the user's channel of a stereo recording
