"""Loading safetensors weights into the front-end's modules, with one-line errors for bad files."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from kame_cli.engine.model import ORACLE_PREFIX, TEXT_EMB_PREFIX, OracleLMModel
from kame_cli.errors import CheckpointError

T = TypeVar("T")


_STORED_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1}
_FLOATS = {"F64", "F32", "F16", "BF16"}


def loaded_bytes(path: Path, dtype: torch.dtype) -> int:
    """Memory the file's tensors take once floats are cast to `dtype`, from the file's header alone."""
    from safetensors import safe_open

    target = torch.tensor([], dtype=dtype).element_size()

    def count() -> int:
        total = 0
        with safe_open(path, framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - a safe_open handle is not iterable
                tensor = handle.get_slice(key)
                stored = tensor.get_dtype()
                size = (
                    target if stored in _FLOATS and not key.endswith("_scb") else _STORED_BYTES.get(stored, 4)
                )
                total += math.prod(tensor.get_shape()) * size
        return total

    return _reading(path, count)


def read_safetensors(path: Path, device: torch.device) -> dict[str, torch.Tensor]:
    """All tensors of a `.safetensors` file, placed on `device`."""
    from safetensors.torch import load_file

    return _reading(path, lambda: load_file(path, device=str(device)))


def _reading(path: Path, read: Callable[[], T]) -> T:
    """Run `read` on a weights file, turning every way it can fail into a one-line `CheckpointError`."""
    from safetensors import SafetensorError

    if path.suffix not in (".safetensors", ".sft", ".sfts"):
        raise CheckpointError(
            f"{path}: unsupported weights format '{path.suffix}': expected a .safetensors file"
        )
    try:
        return read()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found: check the path or the checkpoint directory") from None
    except SafetensorError as err:
        raise CheckpointError(f"{path}: corrupt safetensors file ({err}): download it again") from None
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read weights ({err.strerror or err})") from None
    except RuntimeError as err:
        # torch's mmap of the file or the copy to the device (out of memory) failed.
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: cannot load weights ({first[:200]})") from None


def upgrade_oracle_keys(state: dict[str, torch.Tensor], model: OracleLMModel, path: Path) -> bool:
    """Give a plain Moshi state dict `oracle_emb` = a copy of `text_emb`; True when it did.

    A state dict holding only part of the oracle table is refused: it is corrupt, not legacy.
    """
    expected = model.oracle_keys
    present = {key for key in state if key.startswith(ORACLE_PREFIX)}
    if present == expected:
        return False
    if present:
        missing = sorted(expected - present)
        extra = sorted(present - expected)
        detail = f"missing {', '.join(missing)}" if missing else f"unexpected {', '.join(extra)}"
        raise CheckpointError(
            f"{path}: partial oracle_emb ({detail}): the checkpoint is corrupt, re-download it"
        )
    for key in expected:
        source = TEXT_EMB_PREFIX + key[len(ORACLE_PREFIX) :]
        if source in state:
            state[key] = state[source].clone()
    return True


def cast_floats(state: dict[str, torch.Tensor], dtype: torch.dtype) -> None:
    """Cast floating tensors to the run dtype; 8-bit scales (`*_scb`) stay fp32 as moshi's QLinear needs."""
    for key, value in state.items():
        if value.dtype.is_floating_point and not key.endswith("_scb"):
            state[key] = value.to(dtype)


def _shape(value: torch.Size) -> str:
    return "(" + ", ".join(str(d) for d in value) + ")"


def _names(keys: list[str]) -> str:
    shown = ", ".join(f"'{key}'" for key in sorted(keys)[:3])
    return shown + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")


def load_state(module: nn.Module, state: dict[str, torch.Tensor], path: Path, *, assign: bool) -> None:
    """Load `state` into `module`; wrong shapes, missing or unexpected tensors raise `CheckpointError`."""
    expected = module.state_dict()
    for key, value in state.items():
        want = expected.get(key)
        if want is not None and want.shape != value.shape:
            raise CheckpointError(
                f"{path}: tensor '{key}' has shape {_shape(value.shape)} but the config expects "
                f"{_shape(want.shape)}: weights and config.json do not belong together"
            )
    try:
        result = module.load_state_dict(state, strict=False, assign=assign)
    except RuntimeError as err:
        # Shapes of tensors that moshi's load hooks rename (fused attention projections) land here.
        lines = [line.strip() for line in str(err).splitlines() if "size mismatch" in line]
        detail = lines[0] if lines else str(err).splitlines()[0]
        raise CheckpointError(f"{path}: {detail}") from None
    if result.unexpected_keys:
        raise CheckpointError(
            f"{path}: unexpected tensor(s) {_names(result.unexpected_keys)}: "
            "these weights are not for the model its config.json describes"
        )
    if result.missing_keys:
        raise CheckpointError(
            f"{path}: missing tensor(s) {_names(result.missing_keys)}: the checkpoint is incomplete"
        )
