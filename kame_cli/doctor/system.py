"""Python, torch and the GPU as torch sees it."""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass

from kame_cli.doctor.report import Check, Details, Status, gib


@dataclass(frozen=True)
class GpuInfo:
    """The first CUDA device, as the front-end will use it."""

    name: str
    capability: tuple[int, int]
    free: int
    total: int
    bf16: bool


def check_python() -> Check:
    # pyproject's requires-python keeps older interpreters out; the line shows which one runs kame.
    version = platform.python_version()
    return Check("python", "ok", f"Python {version} ({sys.executable})", details={"version": version})


def check_torch(needs_gpu: bool) -> tuple[Check, GpuInfo | None]:
    """The torch build, and the GPU it sees (None when it sees none)."""
    import torch

    build = torch.version.cuda
    details: Details = {"torch": torch.__version__, "cuda_build": build}
    shown = f"torch {torch.__version__} ({'CUDA ' + build + ' build' if build else 'CPU-only build'})"
    if build is None:
        status: Status = "fail" if needs_gpu else "ok"
        fix = "pip install torch (the default PyPI wheel is the CUDA build)" if needs_gpu else None
        return Check("torch", status, shown, fix, details), None
    if not torch.cuda.is_available():
        return Check("torch", "ok", shown, None, details), None
    index = torch.cuda.current_device()
    free, total = torch.cuda.mem_get_info(index)
    gpu = GpuInfo(
        name=torch.cuda.get_device_name(index),
        capability=torch.cuda.get_device_capability(index),
        free=int(free),
        total=int(total),
        bf16=bool(torch.cuda.is_bf16_supported()),
    )
    return Check("torch", "ok", shown, None, details), gpu


def check_gpu(gpu: GpuInfo | None, needs_gpu: bool, frontend_label: str) -> Check:
    """The GPU line: name, compute capability, memory; or why none is needed or what to do."""
    if gpu is None:
        summary = "no CUDA GPU visible to torch"
        if needs_gpu:
            return Check(
                "gpu",
                "fail",
                f"{summary}: {frontend_label} needs one",
                "run on a machine with an NVIDIA GPU and its driver (check `nvidia-smi`), "
                "or try the CPU demo: kame doctor --profile offline",
            )
        return Check("gpu", "ok", f"{summary}: not needed, {frontend_label} runs on the CPU")
    major, minor = gpu.capability
    summary = f"{gpu.name}, compute capability {major}.{minor}, {gib(gpu.free)} free of {gib(gpu.total)}"
    details: Details = {
        "name": gpu.name,
        "capability": f"{major}.{minor}",
        "free_bytes": gpu.free,
        "total_bytes": gpu.total,
        "bf16": gpu.bf16,
    }
    if not gpu.bf16:
        return Check("gpu", "warn", f"{summary}; no bf16", "run with --half (fp16)", details)
    return Check("gpu", "ok", summary, None, details)
