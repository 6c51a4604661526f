"""Checkpoints load through the production loader: directories, the hub cache, overrides, built-ins."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from kame_cli.engine.config import FrontendConfig
from kame_cli.engine.loader import load_frontend
from kame_cli.errors import ModelNotAvailableError
from kame_cli.events import FrontendText, StepTiming
from tests.engine.streaming import stream, voice_like_frames
from tests.support.checkpoints import LM_NAME, error_from_a_silent_hub, install_in_hub_cache


def _load(model: str, **overrides: object):
    return load_frontend(FrontendConfig(model=model, device="cpu", **overrides))  # type: ignore[arg-type]


def test_tiny_checkpoint_streams_50_frames_to_50_output_frames_and_text(kame_checkpoint: Path) -> None:
    frontend = _load(str(kame_checkpoint))
    assert (frontend.sample_rate, frontend.frame_size, frontend.dtype) == (24_000, 1920, torch.float32)

    result = stream(frontend, voice_like_frames(50))

    assert [step for step, _ in result.outputs] == list(range(50))
    assert all(pcm.shape == (1920,) and pcm.dtype == np.float32 for _, pcm in result.outputs)
    assert all(np.isfinite(pcm).all() for _, pcm in result.outputs)
    # moshi's acoustic delay: the first step has no audio tokens yet, so it plays silence.
    assert not result.outputs[0][1].any()
    assert all(pcm.any() for _, pcm in result.outputs[1:])
    assert result.loop.steps == 50
    texts = result.of(FrontendText)
    assert texts, "the front-end emitted no text pieces"
    assert all(event.text and "▁" not in event.text for event in texts)
    assert [event.step for event in result.of(StepTiming)] == list(range(50))


def test_plain_moshi_checkpoint_gets_oracle_emb_copied_from_text_emb(moshi_checkpoint: Path) -> None:
    on_disk = load_file(moshi_checkpoint / LM_NAME)
    assert not any(key.startswith("oracle_emb.") for key in on_disk)

    frontend = _load(str(moshi_checkpoint))

    assert frontend.oracle_from_text_emb
    text = frontend.lm.text_emb.weight
    assert torch.equal(text, on_disk["text_emb.weight"].float())
    assert torch.equal(frontend.lm.oracle_emb.weight, text)
    assert frontend.lm.oracle_emb.weight.data_ptr() != text.data_ptr()


def test_kame_checkpoint_keeps_its_own_oracle_emb(kame_checkpoint: Path) -> None:
    on_disk = load_file(kame_checkpoint / LM_NAME)

    frontend = _load(str(kame_checkpoint))

    assert not frontend.oracle_from_text_emb
    assert torch.equal(frontend.lm.oracle_emb.weight, on_disk["oracle_emb.weight"].float())
    assert not torch.equal(frontend.lm.oracle_emb.weight, frontend.lm.text_emb.weight)


def test_explicit_override_replaces_the_directory_lm_weights(
    kame_checkpoint: Path, moshi_checkpoint: Path
) -> None:
    frontend = _load(str(kame_checkpoint), lm_weights=str(moshi_checkpoint / LM_NAME))

    assert frontend.files is not None and frontend.files.lm_weights == moshi_checkpoint / LM_NAME
    assert frontend.oracle_from_text_emb
    on_disk = load_file(moshi_checkpoint / LM_NAME)
    assert torch.equal(frontend.lm.text_emb.weight, on_disk["text_emb.weight"].float())


def test_repo_id_loads_offline_from_the_hub_cache(kame_checkpoint: Path, tmp_path: Path) -> None:
    install_in_hub_cache(kame_checkpoint, tmp_path, "tiny-org/kame-tiny")

    frontend = load_frontend(FrontendConfig(model="tiny-org/kame-tiny", device="cpu"), cache_dir=tmp_path)

    assert frontend.files is not None and frontend.files.source == "tiny-org/kame-tiny"
    assert frontend.files.lm_weights.is_relative_to(tmp_path)
    assert not frontend.oracle_from_text_emb


def test_repo_id_offline_without_cache_fails_fast_with_a_clear_error(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(ModelNotAvailableError) as caught:
        load_frontend(FrontendConfig(model="SakanaAI/kame", device="cpu"), cache_dir=tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert "SakanaAI/kame" in message and "HF_HUB_OFFLINE" in message
    assert time.monotonic() - started < 10, "an offline load must fail at once, not hang"


def test_repo_id_with_an_unanswering_hub_fails_fast_with_one_line(tmp_path: Path) -> None:
    line = error_from_a_silent_hub(
        "from kame_cli.engine.config import FrontendConfig\nfrom kame_cli.engine.loader import load_frontend",
        'load_frontend(FrontendConfig(model="SakanaAI/kame", device="cpu"))',
        tmp_path,
    )
    assert line.startswith("ModelNotAvailableError SakanaAI/kame:") and "local checkpoint directory" in line


def test_unknown_model_name_is_a_typed_error() -> None:
    with pytest.raises(ModelNotAvailableError, match="unknown model 'random:huge'"):
        _load("random:huge")


def test_random_tiny_is_built_in_and_deterministic() -> None:
    first = _load("random:tiny")
    second = _load("random:tiny")

    assert first.files is None and first.frame_size == 1920
    assert first.text_tokenizer.vocab_size() == first.lm.text_card
    assert torch.equal(first.lm.oracle_emb.weight, second.lm.oracle_emb.weight)
    assert first.text_tokenizer.encode("what is the boiling point of water") != []
