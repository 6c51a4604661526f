"""The front-end checkpoint (built-in, local, cached, or how much the hub would send) and int8 support."""

from __future__ import annotations

from pathlib import Path

from kame_cli.doctor.hubinfo import HubUnavailable, repo_file_sizes
from kame_cli.doctor.report import Check, Status, first_line, gib
from kame_cli.engine.config import FrontendConfig

_LOCAL_FIX = "run once with network access, or pass a local checkpoint directory with --model DIR"


def check_frontend(cfg: FrontendConfig) -> tuple[Check, int]:
    """The checkpoint line, and the bytes a first session would download."""
    from kame_cli.engine import builtin
    from kame_cli.engine.checkpoint import looks_like_path
    from kame_cli.errors import KameError
    from kame_cli.hub import is_repo_id

    if cfg.model in builtin.BUILTIN_MODELS:
        return Check("frontend", "ok", f"{cfg.model}: built-in random weights, nothing to download"), 0
    if looks_like_path(cfg.model):
        from kame_cli.engine.checkpoint import resolve_checkpoint

        try:
            files = resolve_checkpoint(cfg)  # a directory: local files only
        except KameError as err:
            return Check("frontend", "fail", str(err), "fix the checkpoint directory or --model"), 0
        size = sum(p.stat().st_size for p in (files.lm_weights, files.mimi_weights, files.tokenizer))
        return Check("frontend", "ok", f"local checkpoint {files.source}: {gib(size)}"), 0
    if not is_repo_id(cfg.model):
        return Check(
            "frontend",
            "fail",
            f"unknown model {cfg.model!r}",
            "use a Hugging Face repo id (SakanaAI/kame), a directory, random:tiny or random:7b",
        ), 0
    return _check_repo(cfg)


def _check_repo(cfg: FrontendConfig) -> tuple[Check, int]:
    from huggingface_hub import try_to_load_from_cache

    from kame_cli.engine.checkpoint import (
        CONFIG_NAME,
        DEFAULT_LM_NAME,
        DEFAULT_MIMI_NAME,
        DEFAULT_TOKENIZER_NAME,
        read_config,
    )
    from kame_cli.errors import CheckpointError

    repo = cfg.model
    names = [DEFAULT_LM_NAME, DEFAULT_MIMI_NAME, DEFAULT_TOKENIZER_NAME]
    config = try_to_load_from_cache(repo, CONFIG_NAME, revision=cfg.revision)
    if isinstance(config, str):
        try:
            raw = read_config(Path(config))
        except CheckpointError as err:
            return Check("frontend", "fail", str(err), "delete the cached repo and download it again"), 0
        names = [
            raw.get("moshi_name", DEFAULT_LM_NAME),
            raw.get("mimi_name", DEFAULT_MIMI_NAME),
            raw.get("tokenizer_name", DEFAULT_TOKENIZER_NAME),
        ]
    cached = {name: try_to_load_from_cache(repo, name, revision=cfg.revision) for name in names}
    if isinstance(config, str) and all(isinstance(path, str) for path in cached.values()):
        paths = [Path(str(path)) for path in cached.values()]
        size = sum(p.stat().st_size for p in paths)
        return Check(
            "frontend",
            "ok",
            f"{repo}: cached, {gib(size)} in {paths[0].parent}",
            details={"cached_bytes": size, "path": str(paths[0].parent)},
        ), 0
    try:
        sizes = repo_file_sizes(repo, cfg.revision)
    except HubUnavailable as err:
        return Check("frontend", "fail", f"{repo}: not in the Hugging Face cache and {err}", _LOCAL_FIX), 0
    wanted = [n for n in [CONFIG_NAME, *names] if n in sizes and not isinstance(cached.get(n), str)]
    if not any(n.endswith(".safetensors") for n in wanted) and not all(
        isinstance(p, str) for p in cached.values()
    ):
        wanted = [n for n in sizes if n.endswith(".safetensors") or n == CONFIG_NAME]  # names unknown yet
    download = sum(sizes[n] for n in wanted)
    return Check(
        "frontend",
        "ok",
        f"{repo}: not cached; the hub answers, {gib(download)} to download on the first `kame talk`",
        details={"download_bytes": download},
    ), download


def check_int8(cfg: FrontendConfig, device: str, requested: bool) -> Check | None:
    """bitsandbytes' int8 on this GPU (asked for, or worth knowing on any GPU); None when moot."""
    import torch

    from kame_cli.engine.quantize import require_int8
    from kame_cli.errors import DeviceError

    if device != "cuda" and not requested:
        return None
    try:
        require_int8(torch.device(device))
    except DeviceError as err:
        status: Status = "fail" if requested else "warn"
        return Check("int8", status, str(err).split(": drop --quantize")[0], "run without --quantize")
    import bitsandbytes

    note = "in use (--quantize int8)" if requested else "available with --quantize int8"
    return Check(
        "int8", "ok", f"bitsandbytes {bitsandbytes.__version__} int8 matmul works on this GPU: {note}"
    )


def describe_error(err: BaseException) -> str:
    return first_line(err)
