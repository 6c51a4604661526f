"""`kame talk`'s refusals: one line on stderr, exit code 2, nothing loaded, no secret echoed."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.session.conftest import kame_command, kame_env, read_events, run_kame, smollm2_profile
from tests.support.llm_server import smollm2_server

KEY_ENV, KEY = "KAME_TEST_LLM_KEY", "sk-test-0123456789abcdef"


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("kame: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_big_front_end_without_a_gpu_names_the_way_out(question_wav: Path) -> None:
    line = _one_line_error(
        run_kame(
            "talk",
            "--profile",
            "offline",
            "--model",
            "random:7b",
            "--device",
            "auto",
            "--input",
            str(question_wav),
            "--no-llm",  # the front-end's own refusal; the LLM's start-up would only cost time
        )
    )
    assert "no CUDA GPU" in line and "--device cpu" in line


def test_bad_input_file_and_device_are_one_line(tmp_path: Path, question_wav: Path) -> None:
    assert "missing.wav" in _one_line_error(
        run_kame("talk", "--profile", "offline", "--input", str(tmp_path / "missing.wav"))
    )
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not audio")
    assert "notes.wav" in _one_line_error(run_kame("talk", "--profile", "offline", "--input", str(not_audio)))
    line = _one_line_error(
        run_kame(
            "talk", "--profile", "offline", "--input", str(question_wav), "--output-device", "no-such-speaker"
        )
    )
    assert "no-such-speaker" in line and "kame devices" in line


def _keyed_profile(path: Path, api_base: str) -> Path:
    more = f'api_key_env = "{KEY_ENV}"\nmax_tokens = 20'
    return smollm2_profile(path, "a server that wants a key", api_base, more)


def test_api_key_comes_from_the_named_variable_and_is_never_written(
    question_wav: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)  # the server's own key; each kame run gets its environment below
    with smollm2_server(api_key_env=KEY_ENV) as server:
        profile = _keyed_profile(tmp_path / "keyed.toml", server.api_base)
        missing = subprocess.run(
            kame_command("talk", "--profile", str(profile), "--input", str(question_wav), "--fast"),
            env={k: v for k, v in kame_env().items() if k != KEY_ENV},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert KEY_ENV in _one_line_error(missing)

        log_dir = tmp_path / "log"
        result = subprocess.run(
            kame_command(
                "talk",
                "--profile",
                str(profile),
                "--input",
                str(question_wav),
                "--log-dir",
                str(log_dir),
                "--no-ui",
            ),
            env={**kame_env(), KEY_ENV: KEY},
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert result.returncode == 0, result.stderr[-2000:]
    events = read_events(log_dir / "events.jsonl")
    assert any(e["type"] == "OracleChunk" for e in events), "the keyed server answered"
    written = "".join(p.read_text(errors="replace") for p in log_dir.iterdir() if p.suffix == ".jsonl")
    assert KEY not in written + result.stdout + result.stderr


def test_ctrl_c_while_loading_exits_at_once_without_traceback(question_wav: Path) -> None:
    process = subprocess.Popen(
        kame_command("talk", "--profile", "offline", "--input", str(question_wav)),
        env=kame_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(2.0)  # importing torch and loading the models
    assert process.poll() is None
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert time.monotonic() - sent < 10
    assert process.returncode in (0, 130), stderr
    assert "Traceback" not in stderr


def test_flags_that_need_another_flag_are_refused() -> None:
    assert "--input" in _one_line_error(run_kame("talk", "--profile", "offline", "--fast"))
    assert "--output" in _one_line_error(run_kame("talk", "--profile", "offline", "--output-stereo"))


def test_input_file_that_breaks_off_mid_session_ends_with_one_line(tmp_path: Path) -> None:
    import soundfile as sf

    from tests.support.speech import concat, synthesize

    whole = tmp_path / "whole.flac"
    sf.write(whole, concat([synthesize("What is the capital city of France?"), 2.0]), 24_000, format="FLAC")
    cut = tmp_path / "cut.flac"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 6 // 10])
    line = _one_line_error(
        run_kame("talk", "--profile", "offline", "--input", str(cut), "--fast", "--no-llm")
    )
    assert "cut.flac" in line
