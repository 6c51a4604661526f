"""`kame doctor` on this machine: no GPU, the CPU path, a real llama.cpp server, the virtual sound card."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kame_cli.backends.oracle.local_server import LocalLlamaServer
from kame_cli.cli import run
from tests.audio_io.signals import sine
from tests.audio_io.virtual_alsa import VirtualSoundCard
from tests.doctor.doctor_json import DoctorJson
from tests.support.llm_server import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
OFFLINE = (REPO_ROOT / "profiles" / "offline.toml").read_text()
_NO_GPU = {"CUDA_VISIBLE_DEVICES": ""}  # the same answers on a machine that has one

_DOCTOR_ON_CARD = """
import contextlib, io, json, sys
from kame_cli.cli import run
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = run(["doctor", "--json", *sys.argv[1:]])
print(json.dumps({"code": code, "report": json.loads(out.getvalue())}))
"""


def test_cpu_path_with_no_gpu_on_the_virtual_sound_card_passes(tmp_path: Path) -> None:
    profile = tmp_path / "cpu.toml"
    profile.write_text(OFFLINE.replace('[stt]\nmodel = "tiny.en"\ndevice = "cpu"', '[stt]\ndevice = "auto"'))
    card = VirtualSoundCard(tmp_path)
    card.add_microphone("kame_mic", 44100, sine(440, 44100, 1.0))
    card.add_speaker("kame_speaker", 48000)
    code = _DOCTOR_ON_CARD.replace(
        "import contextlib", f"import os; os.environ.update({_NO_GPU!r})\nimport contextlib"
    )
    args = ["--profile", str(profile), "--input-device", "kame_mic", "--output-device", "kame_speaker"]
    result = card.run(code.replace("sys.argv[1:]", repr(args)), timeout=180)
    report = DoctorJson.model_validate(result["report"])
    assert result["code"] == report.exit_code == 0 and report.ok
    assert report.frontend.model == "random:tiny" and report.frontend.device == "cpu"
    gpu = report.check("gpu")
    assert gpu.status == "ok" and gpu.summary.startswith("no CUDA GPU visible to torch: not needed")
    stt_cuda = report.check("stt-cuda")
    assert stt_cuda.status == "ok" and "sees no CUDA GPU: the STT runs on CPU" in stt_cuda.summary
    assert str(stt_cuda.details["cublas"]).endswith("nvidia/cublas/lib/libcublas.so.12")  # found, from where
    assert report.check("stt-model").summary.startswith("tiny.en on cpu: bundled at ")
    memory = report.check("memory")
    assert memory.status == "ok" and memory.details["device"] == "cpu"
    parts = memory.details["parts"]
    assert isinstance(parts, dict) and isinstance(parts["llm"], int) and parts["llm"] > 0
    mic, speaker = report.check("audio-in"), report.check("audio-out")
    assert mic.status == speaker.status == "ok"
    assert "kame_mic" in mic.summary and "opens at" in mic.summary and mic.details["device"] == "kame_mic"
    assert "kame_speaker" in speaker.summary and isinstance(speaker.details["rate"], int)
    # The bundled model's Q8_0 copy, which install.sh (or the first session) made.
    assert report.check("llm").summary.startswith("llama.cpp child serves SmolLM2-135M-Instruct.Q4_1.")
    assert ".Q8_0.gguf (145 MB)" in report.check("llm").summary
    assert report.check("frontend").status == "ok" and report.check("disk").status == "ok"


def test_the_default_setup_without_a_gpu_fails_with_one_line_and_a_fix_per_problem(tmp_path: Path) -> None:
    profile = tmp_path / "ollama.toml"
    port = free_port()  # nothing listens there: Ollama is "down"
    profile.write_text(
        (REPO_ROOT / "profiles" / "ollama.toml")
        .read_text()
        .replace("http://127.0.0.1:11434", f"http://127.0.0.1:{port}")
    )
    done = subprocess.run(
        [sys.executable, "-m", "kame_cli.cli", "doctor", "--profile", str(profile)],
        cwd=REPO_ROOT,
        env=os.environ | _NO_GPU | {"HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith(f"kame doctor · profile ollama ({profile}")
    rows = {line.split()[1]: line for line in lines[1:-1] if not line.strip().startswith("fix:")}
    assert rows["gpu"].split()[0] == "fail" and "no CUDA GPU visible to torch" in rows["gpu"]
    assert rows["memory"].split()[0] == "warn" and "with --quantize int8" in rows["memory"]
    assert rows["frontend"].split()[0] == "fail" and "HF_HUB_OFFLINE is set" in rows["frontend"]
    assert rows["llm"].split()[0] == "fail" and f"127.0.0.1:{port}" in rows["llm"]
    assert rows["python"].split()[0] == rows["torch"].split()[0] == "ok"
    fixes = [line for line in lines if line.strip().startswith("fix:")]
    assert len(fixes) >= 3 and any("ollama serve" in fix for fix in fixes)
    assert lines[-1].startswith("3 failed")


def _loopback_profile(tmp_path: Path, server: LocalLlamaServer, model: str) -> Path:
    profile = tmp_path / f"loopback-{model}.toml"
    profile.write_text(
        f"""
[llm]
provider = "openai"
model = "{model}"
api_base = "{server.api_base}"
api_key_env = "KAME_DOCTOR_TEST_KEY"

[stt]
device = "cpu"

[frontend]
model = "random:tiny"
device = "cpu"
"""
    )
    return profile


def test_a_real_loopback_llm_server_is_checked_and_the_key_never_shown(
    tmp_path: Path,
    smollm2: LocalLlamaServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret = "sk-doctor-secret-4711"
    monkeypatch.setenv("KAME_DOCTOR_TEST_KEY", secret)
    present = _loopback_profile(tmp_path, smollm2, "smollm2")
    code = run(["doctor", "--profile", str(present), "--json"])
    out = capsys.readouterr()
    report = DoctorJson.model_validate(json.loads(out.out))
    assert code == report.exit_code == 0
    assert report.check("llm").status == "ok" and report.check("llm").summary.endswith(
        "answers and lists smollm2"
    )
    assert report.check("llm-key").summary == "KAME_DOCTOR_TEST_KEY is set (its value is never shown)"
    assert secret not in out.out + out.err

    absent = _loopback_profile(tmp_path, smollm2, "llama-9000")
    assert run(["doctor", "--profile", str(absent)]) == 0  # a warning: the server may alias names
    text = capsys.readouterr().out
    assert "warn  llm" in text and "llama-9000 is not in its model list" in text and secret not in text

    monkeypatch.delenv("KAME_DOCTOR_TEST_KEY")
    assert run(["doctor", "--profile", str(present)]) == 1
    text = capsys.readouterr().out
    assert "fail  llm-key    KAME_DOCTOR_TEST_KEY is not set" in text
    assert "fix: export KAME_DOCTOR_TEST_KEY=..." in text


def test_a_bad_profile_or_quantize_value_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["doctor", "--profile", str(tmp_path / "missing.toml")]) == 2
    assert run(["doctor", "--profile", "offline", "--quantize", "int4"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and errors[1] == "kame: error: --quantize int4: expected none or int8"


def test_int8_asked_for_on_the_cpu_path_fails_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["doctor", "--profile", "offline", "--quantize", "int8", "--json"]) == 1
    report = DoctorJson.model_validate(json.loads(capsys.readouterr().out))
    int8 = report.check("int8")
    assert int8.status == "fail" and int8.summary.startswith("--quantize int8 needs a CUDA GPU")
    assert report.frontend.quantize == "int8"


def test_a_missing_part_of_the_install_fails_its_own_line_and_the_rest_still_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # `import ctranslate2` now fails
    assert run(["doctor", "--profile", "offline", "--json"]) == 1
    report = DoctorJson.model_validate(json.loads(capsys.readouterr().out))
    stt = report.check("stt-cuda")
    assert (stt.status, stt.summary) == ("fail", "ctranslate2 is not installed")
    assert stt.fix == "reinstall kame: bash scripts/install.sh"
    assert report.check("llm").status == report.check("frontend").status == "ok"
