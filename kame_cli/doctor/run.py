"""Runs every check in the order a session meets them; returns the report (nothing is changed)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from kame_cli.doctor.report import Check, DoctorReport
from kame_cli.doctor.stt import SttPlan

T = TypeVar("T")


@dataclass(frozen=True)
class DoctorOptions:
    """What `kame doctor` was asked; None keeps the profile's value."""

    profile: str | None = None
    model: str | None = None
    quantize: str | None = None
    input_device: str | None = None
    output_device: str | None = None


def run_doctor(opts: DoctorOptions) -> DoctorReport:
    """All checks for the profile (and overrides) in `opts`; a bad profile raises its KameError."""
    from kame_cli.doctor.audio import check_audio
    from kame_cli.doctor.disk import check_disk
    from kame_cli.doctor.frontend import check_frontend, check_int8
    from kame_cli.doctor.llm import check_llm
    from kame_cli.doctor.stt import check_stt_cuda, check_stt_model
    from kame_cli.doctor.system import check_gpu, check_python, check_torch
    from kame_cli.engine import builtin
    from kame_cli.engine.checkpoint import looks_like_path
    from kame_cli.profiles import load_profile
    from kame_cli.settings import override

    profile = load_profile(opts.profile)
    overrides: dict[str, Any] = {}
    if opts.model is not None:
        overrides["model"] = opts.model
    if opts.quantize is not None:
        overrides["quantize"] = opts.quantize
    frontend = override(profile.frontend, overrides)
    # As `kame talk` decides: only small local models may run on the CPU when the device is auto.
    needs_gpu = frontend.device == "cuda" or (
        frontend.device == "auto" and not (frontend.model == builtin.TINY or looks_like_path(frontend.model))
    )
    checks: list[Check] = [check_python()]
    torch_check, gpu = check_torch(needs_gpu)
    checks.append(torch_check)
    device = "cuda" if gpu is not None and frontend.device != "cpu" else "cpu"
    if device == "cuda":
        dtype = "float16" if frontend.half or (gpu is not None and not gpu.bf16) else "bfloat16"
    else:
        dtype = "bfloat16" if frontend.model == builtin.FULL_7B else "float32"
    if frontend.quantize == "int8":
        dtype += ", int8 linears"
    checks.append(check_gpu(gpu, needs_gpu, f"front-end {frontend.model}"))
    memory_at = len(checks)  # the plan needs the STT and LLM findings: inserted here afterwards
    front_check, download = _guarded("frontend", lambda: check_frontend(frontend), 0)
    checks.append(front_check)
    int8 = frontend.quantize == "int8"
    int8_check, _ = _guarded("int8", lambda: (check_int8(frontend, device, int8), None), None)
    if int8_check is not None:
        checks.append(int8_check)
    stt_cuda, stt_device = _guarded("stt-cuda", lambda: check_stt_cuda(profile.stt), "cpu")
    stt_model, stt_plan = _guarded(
        "stt-model", lambda: check_stt_model(profile.stt, stt_device), SttPlan("cpu", "tiny.en", None)
    )
    checks += [stt_cuda, stt_model]
    checks.append(check_audio("input", opts.input_device))
    checks.append(check_audio("output", opts.output_device))
    llm_checks, llm_memory = check_llm(profile)
    checks += llm_checks
    checks.append(check_disk(download + stt_plan.download_bytes))
    if device == "cpu" and needs_gpu:
        memory, _ = _guarded("memory", lambda: (_vram_needed(frontend), None), None)
        checks.insert(memory_at, memory)
    else:
        memory, _ = _guarded(
            "memory", lambda: (_memory(frontend, device, gpu, stt_plan, llm_memory), None), None
        )
        checks.insert(memory_at, memory)
    return DoctorReport(
        profile={"name": profile.name, "path": profile.shown_path},
        frontend={"model": frontend.model, "device": device, "dtype": dtype, "quantize": frontend.quantize},
        checks=checks,
    )


def _memory(frontend: Any, device: str, gpu: Any, stt_plan: Any, llm_memory: Any) -> Check:
    from kame_cli.doctor.memory import frontend_memory, memory_check, stt_memory

    try:
        as_loaded, with_int8 = frontend_memory(frontend, device)
    except (TypeError, ValueError, AssertionError, KeyError) as err:  # moshi's checks of a bad config
        return Check(
            "memory", "warn", f"no plan: the front-end's config does not build ({type(err).__name__})"
        )
    front = with_int8 if frontend.quantize == "int8" else as_loaded
    if device == "cuda":
        free, total = gpu.free, gpu.total
    else:
        import psutil

        ram = psutil.virtual_memory()
        free, total = ram.available, ram.total
    stt = stt_memory(stt_plan.model, stt_plan.model_dir, stt_plan.device)
    alternative = with_int8 if device == "cuda" and not front.int8 else None
    return memory_check(device, free, total, front, alternative, stt, stt_plan.device, llm_memory)


def _vram_needed(frontend: Any) -> Check:
    """Without a GPU to measure: what one would need for this front-end (and the CUDA STT default)."""
    from kame_cli.backends.stt.model import CUDA_DEFAULT_MODEL
    from kame_cli.doctor.memory import frontend_memory, stt_memory
    from kame_cli.doctor.report import gib

    try:
        as_loaded, with_int8 = frontend_memory(frontend, "cuda")
    except (TypeError, ValueError, AssertionError, KeyError) as err:
        return _no_plan(err)
    stt = stt_memory(CUDA_DEFAULT_MODEL, None, "cuda")
    plain, int8 = as_loaded.total + stt, with_int8.total + stt
    return Check(
        "memory",
        "warn",
        f"a GPU would need {gib(plain)} of VRAM ({'int8' if as_loaded.int8 else '16-bit'}), "
        f"{gib(int8)} with --quantize int8 (front-end + STT {CUDA_DEFAULT_MODEL}); no GPU here to check",
        None,
        {"device": "none", "needed_bytes": plain, "int8_needed_bytes": int8},
    )


def _no_plan(err: BaseException) -> Check:
    return Check("memory", "warn", f"no plan: the front-end's config does not build ({type(err).__name__})")


def _guarded(name: str, check: Callable[[], tuple[Any, T]], fallback: T) -> tuple[Any, T]:
    """Run `check`; a part of kame's install that is missing becomes that check's failure."""
    try:
        return check()
    except ModuleNotFoundError as err:
        return Check(
            name, "fail", f"{err.name} is not installed", "reinstall kame: bash scripts/install.sh"
        ), fallback
