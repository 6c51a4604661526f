"""The STT: can CTranslate2 run on CUDA here (cuBLAS/cuDNN found, from where), and is its model on disk."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from kame_cli.backends.stt.config import SttConfig
from kame_cli.doctor.hubinfo import HubUnavailable, repo_file_sizes
from kame_cli.doctor.report import Check, Details, Status, first_line

_PROBE_TIMEOUT_S = 120.0
# Run apart: a CUDA library that aborts while loading must not take the doctor with it.
_PROBE = """
import json, time
import ctranslate2
from kame_cli.backends.stt.cuda import CudaSttUnavailableError, preload_cuda_libraries, warm_up
from kame_cli.backends.stt.model import bundled_tiny_en
report = preload_cuda_libraries()
out = {"libraries": report.describe(), "ok": report.ok, "encode_s": None, "error": None}
path = bundled_tiny_en()
if report.ok and path is not None:
    started = time.perf_counter()
    try:
        whisper = ctranslate2.models.Whisper(str(path), device="cuda", compute_type="float16")
        warm_up(whisper, 80)
        out["encode_s"] = time.perf_counter() - started
    except (CudaSttUnavailableError, RuntimeError, ValueError) as err:
        out["error"] = (str(err).splitlines() or [type(err).__name__])[0][:200]
print(json.dumps(out))
"""


@dataclass(frozen=True)
class SttPlan:
    """Where the STT will run and on which model, as a session would choose."""

    device: str
    model: str
    model_dir: Path | None
    download_bytes: int = 0


def check_stt_cuda(cfg: SttConfig) -> tuple[Check, str]:
    """The CTranslate2 line, and the device the STT will run on (`cuda` or `cpu`)."""
    import ctranslate2

    from kame_cli.backends.stt.cuda import find_cuda_libraries

    version = ctranslate2.__version__
    found = find_cuda_libraries()
    cublas = found.get("libcublas.so.12")
    details: Details = {
        "ctranslate2": version,
        "cublas": str(cublas) if cublas else None,
        "cudnn": str(found["libcudnn.so.9"]) if "libcudnn.so.9" in found else None,
    }
    if cfg.device == "cpu":
        return Check("stt-cuda", "ok", f"CTranslate2 {version}: [stt] device = cpu", None, details), "cpu"
    try:
        gpus = ctranslate2.get_cuda_device_count()
    except RuntimeError as err:  # a driver that does not answer
        gpus = 0
        details["error"] = first_line(err)
    details["gpus"] = gpus
    where = f"pip cuBLAS at {cublas.parent}" if cublas else "no pip cuBLAS"
    if gpus == 0:
        if cfg.device == "cuda":
            return (
                Check(
                    "stt-cuda",
                    "fail",
                    f"CTranslate2 {version} sees no CUDA GPU but [stt] device = cuda",
                    'set [stt] device = "auto" or "cpu"',
                    details,
                ),
                "cpu",
            )
        summary = f"CTranslate2 {version} sees no CUDA GPU: the STT runs on CPU ({where})"
        return Check("stt-cuda", "ok", summary, None, details), "cpu"
    probe = _probe()
    details.update({"libraries": probe.get("libraries"), "encode_s": probe.get("encode_s")})
    if probe.get("error") or not probe.get("ok"):
        reason = probe.get("error") or probe.get("libraries") or "the CUDA probe failed"
        return (
            Check(
                "stt-cuda",
                "warn",
                f"CTranslate2 {version} cannot run on CUDA ({reason}): the STT falls back to tiny.en on CPU",
                "pip install nvidia-cublas-cu12 nvidia-cudnn-cu12 (torch's CUDA wheels bring them), "
                "or put the CUDA 12 toolkit's lib64 on LD_LIBRARY_PATH",
                details,
            ),
            "cpu",
        )
    encode = probe.get("encode_s")
    shown = f", tiny.en test load + encode {encode:.1f} s" if isinstance(encode, float) else ""
    return Check(
        "stt-cuda", "ok", f"CTranslate2 {version} on CUDA: {probe['libraries']}{shown}", None, details
    ), "cuda"


def _probe() -> dict[str, object]:
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"no answer within {_PROBE_TIMEOUT_S:g} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return {"error": f"the probe process died ({tail[:160]})"}
    result: dict[str, object] = json.loads(lines[-1])
    return result


def check_stt_model(cfg: SttConfig, device: str) -> tuple[Check, SttPlan]:
    """Is the model the STT will load on `device` on disk (bundled, cached, local) or downloadable."""
    from faster_whisper import utils
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    from kame_cli.backends.stt.model import CPU_DEFAULT_MODEL, CUDA_DEFAULT_MODEL, bundled_tiny_en
    from kame_cli.hub import is_repo_id

    name = (
        cfg.model if cfg.model != "auto" else (CUDA_DEFAULT_MODEL if device == "cuda" else CPU_DEFAULT_MODEL)
    )
    local = Path(name).expanduser()
    if local.is_dir():
        status: Status = "ok" if (local / "model.bin").is_file() else "fail"
        fix = None if status == "ok" else f"{local} has no model.bin: give a CTranslate2 Whisper directory"
        return Check("stt-model", status, f"{name} (local directory) on {device}", fix), SttPlan(
            device, name, local
        )
    if name == CPU_DEFAULT_MODEL and (bundled := bundled_tiny_en()) is not None:
        return Check("stt-model", "ok", f"{name} on {device}: bundled at {bundled}"), SttPlan(
            device, name, bundled
        )
    if not (is_repo_id(name) or name in utils.available_models()):
        return Check(
            "stt-model",
            "fail",
            f"[stt] model = {name!r} is not a faster-whisper size name",
            "use e.g. small.en",
        ), SttPlan(device, name, None)
    try:
        cached = Path(utils.download_model(name, local_files_only=True, cache_dir=cfg.download_root))
        size = sum(f.stat().st_size for f in cached.iterdir() if f.is_file())
        summary = f"{name} on {device}: cached, {size / 1e6:.0f} MB at {cached}"
        return Check("stt-model", "ok", summary), SttPlan(device, name, cached)
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, FileNotFoundError, ValueError):
        pass  # not cached: ask the hub what a download would be
    repo = name if is_repo_id(name) else utils._MODELS[name]
    fallback = cfg.model == "auto" and device == "cuda"
    try:
        sizes = repo_file_sizes(repo)
    except HubUnavailable as err:
        outcome: Status = "warn" if fallback else "fail"
        then = ": the session will run tiny.en on CPU instead" if fallback else ""
        return Check(
            "stt-model",
            outcome,
            f"{name} is not cached and {err}{then}",
            "run once with network access (it is cached then), or set [stt] model to a local directory",
        ), SttPlan("cpu" if fallback else device, CPU_DEFAULT_MODEL if fallback else name, None)
    download = sum(sizes.values())
    summary = f"{name} on {device}: not cached, {download / 1e6:.0f} MB to download from {repo} on first use"
    return Check("stt-model", "ok", summary, details={"download_bytes": download}), SttPlan(
        device, name, None, download
    )
