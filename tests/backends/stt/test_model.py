from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from kame_cli.backends.stt.config import SttConfig
from kame_cli.backends.stt.model import bundled_tiny_en, load_stt_model
from kame_cli.errors import ConfigError, ModelNotAvailableError
from tests.support.checkpoints import error_from_a_silent_hub
from tests.support.python import run_python


def test_auto_on_cpu_loads_the_bundled_tiny_en(stt_model) -> None:
    assert stt_model.name == "tiny.en"
    assert Path(stt_model.path) == bundled_tiny_en()
    assert stt_model.device == "cpu"
    assert stt_model.compute_type == "int8"
    assert not stt_model.whisper.is_multilingual


def test_local_directory_loads(stt_model) -> None:
    model = load_stt_model(SttConfig(model=stt_model.path, device="cpu", compute_type="float32"))
    assert model.path == stt_model.path
    assert model.compute_type == "float32"


def test_hub_name_offline_without_cache_is_one_clear_line(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(ModelNotAvailableError) as err:
        load_stt_model(SttConfig(model="small.en", device="cpu", download_root=str(tmp_path)))
    message = str(err.value)
    assert "\n" not in message
    assert "small.en" in message and "HF_HUB_OFFLINE" in message
    assert time.monotonic() - started < 10, "an offline miss must fail at once, not hang"


def test_unknown_model_name_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailableError, match=r"tiny\.en"):
        load_stt_model(SttConfig(model="huge.en", device="cpu", download_root=str(tmp_path)))


def test_directory_without_model_bin_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailableError, match=r"model\.bin"):
        load_stt_model(SttConfig(model=str(tmp_path), device="cpu"))
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        load_stt_model(SttConfig(model=str(tmp_path / "missing"), device="cpu"))


def test_bad_device_compute_type_and_language_are_config_errors(stt_model) -> None:
    with pytest.raises(ConfigError, match="device"):
        load_stt_model(SttConfig(device="tpu"))
    with pytest.raises(ConfigError, match="compute_type"):
        load_stt_model(SttConfig(device="cpu", compute_type="int4"))
    with pytest.raises(ConfigError, match="English-only"):
        load_stt_model(SttConfig(model=stt_model.path, device="cpu", language="fr"))


_WITHOUT_GPU = """
from kame_cli.backends.stt.config import SttConfig
from kame_cli.backends.stt.model import load_stt_model
from kame_cli.errors import KameError
model = load_stt_model(SttConfig(device="auto"))
print(model.name, model.device, model.compute_type)
try:
    load_stt_model(SttConfig(device="cuda"))
except KameError as err:
    print(type(err).__name__, err)
"""


def test_without_a_visible_gpu_auto_runs_tiny_en_on_cpu_and_cuda_is_one_clear_line() -> None:
    # CUDA_VISIBLE_DEVICES="" hides any GPU from CTranslate2, so both branches are checked on any machine.
    result = run_python(_WITHOUT_GPU, env=os.environ | {"CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 0, result.stderr
    loaded, refused = result.stdout.strip().splitlines()
    assert loaded == "tiny.en cpu int8"
    assert refused.startswith("DeviceError [stt] device") and 'device = "cpu"' in refused


def test_hub_name_with_an_unanswering_hub_fails_fast_with_one_line(tmp_path: Path) -> None:
    line = error_from_a_silent_hub(
        "from kame_cli.backends.stt.config import SttConfig\n"
        "from kame_cli.backends.stt.model import load_stt_model",
        'load_stt_model(SttConfig(model="small.en", device="cpu"))',
        tmp_path,
    )
    assert line.startswith("ModelNotAvailableError [stt] model = 'small.en'") and "local CTranslate2" in line
