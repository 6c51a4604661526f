"""Each way a checkpoint can be broken gives a typed error with a one-line message naming the file."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from kame_cli.engine.config import FrontendConfig
from kame_cli.engine.loader import load_frontend
from kame_cli.errors import CheckpointError
from tests.support.checkpoints import LM_NAME, MIMI_NAME, TOKENIZER_NAME, write_tiny_checkpoint


def _edit_lm(directory: Path, edit: Callable[[dict[str, torch.Tensor]], None]) -> None:
    state = load_file(directory / LM_NAME)
    edit(state)
    save_file(state, directory / LM_NAME)


def _drop(key: str) -> Callable[[Path], None]:
    return lambda d: _edit_lm(d, lambda s: s.pop(key))


def _add_extra(d: Path) -> None:
    _edit_lm(d, lambda s: s.update({"extra_head.weight": torch.zeros(4, 4)}))


def _shrink_oracle(d: Path) -> None:
    _edit_lm(d, lambda s: s.update({"oracle_emb.weight": s["oracle_emb.weight"][:-10].clone()}))


def _truncate(name: str) -> Callable[[Path], None]:
    def edit(d: Path) -> None:
        data = (d / name).read_bytes()
        (d / name).write_bytes(data[: len(data) // 2])

    return edit


def _garbage(name: str) -> Callable[[Path], None]:
    return lambda d: (d / name).write_bytes(b"this is not a model file at all")


def _change_config(key: str, value: object) -> Callable[[Path], None]:
    def edit(d: Path) -> None:
        config = json.loads((d / "config.json").read_text())
        config[key] = value
        (d / "config.json").write_text(json.dumps(config))

    return edit


CASES: dict[str, tuple[Callable[[Path], None], str, str]] = {
    # case: (how to break the checkpoint, file the message names, what it says)
    "wrong oracle shape": (_shrink_oracle, LM_NAME, "tensor 'oracle_emb.weight' has shape"),
    "unexpected tensor": (_add_extra, LM_NAME, "unexpected tensor(s) 'extra_head.weight'"),
    "missing tensor": (_drop("text_linear.weight"), LM_NAME, "missing tensor(s) 'text_linear.weight'"),
    "missing mimi file": (lambda d: (d / MIMI_NAME).unlink(), MIMI_NAME, "file not found"),
    "truncated lm file": (_truncate(LM_NAME), LM_NAME, "corrupt safetensors file"),
    "garbage mimi file": (_garbage(MIMI_NAME), MIMI_NAME, "corrupt safetensors file"),
    "garbage tokenizer": (_garbage(TOKENIZER_NAME), TOKENIZER_NAME, "not a sentencepiece tokenizer"),
    "corrupt config": (_truncate("config.json"), "config.json", "invalid JSON"),
    "config for another model": (_change_config("dim", 96), LM_NAME, "but the config expects"),
    "config with unknown setting": (_change_config("warp_drive", 9), "config.json", "invalid LM settings"),
    "no config.json": (lambda d: (d / "config.json").unlink(), "config.json", "file not found"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_broken_checkpoint_gives_checkpoint_error_naming_the_file(
    case: str, kame_checkpoint: Path, tmp_path: Path
) -> None:
    break_it, file_name, problem = CASES[case]
    directory = tmp_path / "ckpt"
    shutil.copytree(kame_checkpoint, directory)
    break_it(directory)

    with pytest.raises(CheckpointError) as caught:
        load_frontend(FrontendConfig(model=str(directory), device="cpu"))

    message = str(caught.value)
    assert "\n" not in message
    assert file_name in message
    assert problem in message


def test_partial_oracle_emb_is_refused_not_upgraded(tmp_path: Path) -> None:
    # With normalized embeddings the oracle table has three tensors; a file holding two is corrupt.
    directory = write_tiny_checkpoint(tmp_path / "ckpt", lm_overrides={"norm_emb": True})
    assert "oracle_emb.norm.bias" in load_file(directory / LM_NAME)
    _drop("oracle_emb.norm.bias")(directory)

    with pytest.raises(CheckpointError) as caught:
        load_frontend(FrontendConfig(model=str(directory), device="cpu"))

    message = str(caught.value)
    assert "\n" not in message and LM_NAME in message
    assert "partial oracle_emb (missing oracle_emb.norm.bias)" in message


def test_missing_directory_is_a_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        load_frontend(FrontendConfig(model=str(tmp_path / "nowhere"), device="cpu"))


def test_missing_override_file_is_named(kame_checkpoint: Path, tmp_path: Path) -> None:
    missing = tmp_path / "weights.safetensors"
    with pytest.raises(CheckpointError) as caught:
        load_frontend(FrontendConfig(model=str(kame_checkpoint), device="cpu", lm_weights=str(missing)))
    assert str(missing) in str(caught.value) and "file not found" in str(caught.value)
