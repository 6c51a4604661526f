"""`--quantize int8`: the front-end LM's linear layers in int8, through moshi's own bitsandbytes path.

moshi's `replace_linear_with_qlinear` swaps each bias-free `nn.Linear` for a `QLinear` (int8 weights
plus one fp32 scale per output row); embeddings, norms and so `oracle_emb` stay in the run dtype.
This is the layout of Kyutai's `-q8` checkpoints, made from bf16 weights at load time. To keep the
peak of GPU memory near the int8 size, weights are staged on the CPU and each transformer layer is
moved to the GPU and quantized before the next one arrives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from kame_cli.errors import DeviceError

if TYPE_CHECKING:
    from kame_cli.engine.model import OracleLMModel

_NO_QUANTIZE = "drop --quantize (bf16 needs about 17 GB of GPU memory for the 7B front-end)"


def require_int8(device: torch.device) -> None:
    """Raise DeviceError (one line, with the fix) unless bitsandbytes' int8 matmul works on `device`."""
    if device.type != "cuda":
        raise DeviceError(
            f"--quantize int8 needs a CUDA GPU (bitsandbytes' int8 kernels); the front-end runs on "
            f"{device.type} here: drop --quantize, or run on a GPU"
        )
    try:
        import bitsandbytes
    except ImportError:
        raise DeviceError("--quantize int8 needs bitsandbytes: pip install bitsandbytes") from None
    name = torch.cuda.get_device_name(device)
    major, minor = torch.cuda.get_device_capability(device)
    where = (
        f"bitsandbytes {bitsandbytes.__version__} has no int8 kernel for {name} "
        f"(compute capability {major}.{minor})"
    )
    try:
        error = _probe(device)
    except (RuntimeError, NotImplementedError, AssertionError, OSError, AttributeError) as err:
        # bitsandbytes reports a missing CUDA binary or an unsupported GPU in any of these ways.
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DeviceError(f"{where} ({first[:160]}): {_NO_QUANTIZE}") from None
    if error > 0.05:
        raise DeviceError(f"{where}: its int8 matmul is off by {error:.0%} on this GPU: {_NO_QUANTIZE}")


def _probe(device: torch.device) -> float:
    """Relative error of one small int8 matmul against fp16 on `device`."""
    from moshi.utils.quantize import QLinear

    generator = torch.Generator().manual_seed(0)
    linear = nn.Linear(256, 128, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(128, 256, generator=generator) / 16)
    linear = linear.to(device=device, dtype=torch.float16)
    x = torch.randn(4, 256, generator=generator).to(device=device, dtype=torch.float16)
    with torch.no_grad():
        expected = linear(x).float()
        got = QLinear(linear).to(device)(x).float()
    torch.cuda.synchronize(device)
    return float((got - expected).norm() / expected.norm())


def quantize_linears(lm: OracleLMModel, device: torch.device) -> None:
    """Move `lm` to `device` with its linear layers in int8, one transformer layer at a time.

    `lm` holds its weights on the CPU (or already on `device`) in the run dtype; no other reference
    to them may remain, or the bf16 copies could not be freed as the int8 ones arrive.
    """
    from moshi.utils.quantize import replace_linear_with_qlinear

    blocks: list[nn.Module] = list(lm.transformer.layers)
    if lm.depformer is not None:
        blocks.extend(lm.depformer.layers)
    for block in blocks:
        block.to(device)
        replace_linear_with_qlinear(block)
    lm.to(device)  # embeddings, norms, heads; the int8 tensors are not floats, so no cast touches them
    # The heads and projections outside the layers; already-quantized layers get their scales
    # back in fp32 (moshi's own second pass).
    replace_linear_with_qlinear(lm)
    if device.type == "cuda":
        torch.cuda.empty_cache()


def int8_bytes(module: nn.Module, dtype: torch.dtype) -> int:
    """Bytes of `module`'s parameters once its bias-free linear layers are int8 (others in `dtype`)."""
    element = torch.tensor([], dtype=dtype).element_size()
    total = 0
    quantized: set[int] = set()
    for sub in module.modules():
        if isinstance(sub, nn.Linear) and sub.bias is None:
            total += sub.weight.numel() + sub.out_features * 4  # int8 weights, fp32 row scales
            quantized.add(id(sub.weight))
    for param in module.parameters():
        if id(param) not in quantized:
            total += param.numel() * (element if param.is_floating_point() else param.element_size())
    return total


def is_quantized(module: nn.Module) -> bool:
    """True when `module` holds moshi QLinear layers (a `-q8` checkpoint, or `--quantize int8`)."""
    from moshi.utils.quantize import QLinear

    return any(isinstance(sub, QLinear) for sub in module.modules())
