"""The memory plan: what the front-end, the STT and a local LLM will take, against what is free.

The front-end's weights are counted exactly on a `meta` copy of the LM built from its config (no
memory, no download); the KV cache from its context; the rest is an allowance. Each allowance is
an estimate, to be checked against measured peaks (scripts/gpu_check.sh prints both).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kame_cli.doctor.report import Check, Details, gib
from kame_cli.engine.config import FrontendConfig

RUNTIME_ALLOWANCE = 0.75 * 2**30
"""CUDA graphs, activations, cuBLAS workspaces and allocator slack beside the weights (estimate)."""
WHISPER_PARAMS = {
    "tiny": 39_000_000,
    "base": 74_000_000,
    "small": 244_000_000,
    "medium": 769_000_000,
    "large": 1_550_000_000,
    "distil-small": 166_000_000,
    "distil-medium": 394_000_000,
    "distil-large": 756_000_000,
    "turbo": 809_000_000,
}
STT_ALLOWANCE = 0.25 * 2**30
"""CTranslate2's workspace and the encoder's activations for a 15 s window (estimate)."""
SESSION_ALLOWANCE = 64 * 2**20
"""Per session in a batch: its rows of the step's activations and its token caches (estimate)."""
STT_SESSION_ALLOWANCE = 32 * 2**20
"""Per session beside the one shared STT model: its audio window and its share of decode
workspace (estimate)."""
_NOT_LM = (
    "moshi_name",
    "mimi_name",
    "mimi_config_name",
    "tokenizer_name",
    "lora_name",
    "model_type",
    "lm_gen_config",
    "tts_config",
    "stt_config",
    "model_id",
    "lora",
    "lora_rank",
    "lora_scaling",
    "depformer_causal",
)


@dataclass(frozen=True)
class FrontendMemory:
    """Bytes the front-end takes on its device, by part."""

    weights: int
    kv_cache: int
    mimi: int
    allowance: int
    int8: bool
    mimi_state: int = 0
    """One session's Mimi streaming state (its transformers' key/value caches)."""

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.mimi + self.allowance

    @property
    def per_session(self) -> int:
        """What each session adds in a batch (`kame serve`): the LM's KV cache rows, Mimi's state,
        the allowance for its activations, and its share of the shared STT."""
        return self.kv_cache + self.mimi_state + SESSION_ALLOWANCE + STT_SESSION_ALLOWANCE

    def sessions_fitting(self, free: int, beside: int = 0) -> int:
        """Sessions a batch holds in `free` bytes once the shared parts (weights, Mimi, allowance,
        and `beside`: the STT model, a local LLM) are in."""
        shared = self.weights + self.mimi + self.allowance + beside
        return max(0, (free - shared) // self.per_session)


def lm_config_for(cfg: FrontendConfig) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(LM settings, Mimi settings or None for the default) of `cfg.model`, from local files only.

    A repo that is not cached is taken to be the released 7B layout (KAME and Moshi share it).
    """
    from kame_cli.engine import builtin
    from kame_cli.engine.checkpoint import looks_like_path
    from kame_cli.hub import is_repo_id

    if cfg.model == builtin.TINY:
        return builtin.tiny_lm_config(256), builtin.TINY_MIMI_CONFIG
    raw: dict[str, Any] | None = None
    config_file: Path | None = Path(cfg.config).expanduser() if cfg.config else None
    if config_file is None and looks_like_path(cfg.model):
        config_file = Path(cfg.model).expanduser() / "config.json"
    elif config_file is None and is_repo_id(cfg.model):
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(cfg.model, "config.json", revision=cfg.revision)
        config_file = Path(cached) if isinstance(cached, str) else None
    if config_file is not None and config_file.is_file():
        try:
            raw = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raw = None  # the front-end check reports a bad config; plan with the default layout
    if not isinstance(raw, dict):
        return builtin.full_lm_config(), None
    settings = {k: v for k, v in raw.items() if k not in _NOT_LM}
    if "demux_second_stream" in settings:
        settings["demux_second_text_stream"] = settings.pop("demux_second_stream")
    return builtin.full_lm_config() | settings, None


def frontend_memory(cfg: FrontendConfig, device: str) -> tuple[FrontendMemory, FrontendMemory]:
    """The front-end's bytes on `device` as it loads (16-bit on CUDA, fp32 on CPU; int8 for a `-q8`
    checkpoint), and with `--quantize int8`; from one `meta` build of its LM."""
    import torch

    from kame_cli.engine import builtin
    from kame_cli.engine.model import OracleLMModel
    from kame_cli.engine.quantize import int8_bytes

    lm_kwargs, mimi_config = lm_config_for(cfg)
    q8_checkpoint = bool(lm_kwargs.pop("quantize", False))
    if device == "cuda":
        dtype = torch.float16 if cfg.half else torch.bfloat16
    else:
        dtype = torch.bfloat16 if cfg.model == builtin.FULL_7B else torch.float32
    meta = OracleLMModel(device=torch.device("meta"), dtype=dtype, **lm_kwargs)
    element = torch.tensor([], dtype=dtype).element_size()
    plain = sum(p.numel() * element for p in meta.parameters())
    int8 = int8_bytes(meta, dtype)
    # moshi keeps keys and values for `context` steps in every temporal layer (fp16 when int8).
    context = int(lm_kwargs.get("context") or 0)
    kv_cache = 2 * context * int(lm_kwargs["dim"]) * int(lm_kwargs["num_layers"]) * element
    mimi, mimi_state = _mimi_bytes(mimi_config)
    allowance = int(RUNTIME_ALLOWANCE if cfg.model != builtin.TINY else 64 * 2**20)
    weights = int8 if q8_checkpoint else plain
    as_loaded = FrontendMemory(weights, kv_cache, mimi, allowance, q8_checkpoint, mimi_state)
    return as_loaded, FrontendMemory(int8, kv_cache, mimi, allowance, True, mimi_state)


def _mimi_bytes(mimi_config: dict[str, Any] | None) -> tuple[int, int]:
    """(Mimi's weights, one session's Mimi streaming state), in bytes."""
    import torch
    from moshi.models.loaders import get_mimi
    from moshi.modules.transformer import StreamingMultiheadAttention

    with torch.device("meta"):
        mimi = get_mimi(None, mimi_config, device="meta")
    weights = sum(p.numel() * 4 for p in mimi.parameters())  # moshi runs Mimi in fp32
    # Each attention layer keeps keys and values for `context` steps per session (fp32).
    state = sum(
        2 * layer.embed_dim * int(layer.context or 0) * 4
        for layer in mimi.modules()
        if isinstance(layer, StreamingMultiheadAttention)
    )
    return weights, state


def stt_memory(model_name: str, model_dir: Path | None, device: str) -> int:
    """Bytes of the STT model on `device`: its model.bin when on disk, else the size's parameters."""
    size = 0
    if model_dir is not None and (model_dir / "model.bin").is_file():
        size = (model_dir / "model.bin").stat().st_size
        if device == "cuda":
            size = max(size, _whisper_params(model_name) * 2)  # int8 files load as float16 on CUDA
    else:
        size = _whisper_params(model_name) * (2 if device == "cuda" else 1)
    return int(size + STT_ALLOWANCE)


def _whisper_params(name: str) -> int:
    base = name.removesuffix(".en").removeprefix("Systran/faster-").removeprefix("faster-whisper-")
    for key in sorted(WHISPER_PARAMS, key=len, reverse=True):
        if base.startswith(key):
            return WHISPER_PARAMS[key]
    return WHISPER_PARAMS["small"]


@dataclass(frozen=True)
class LlmMemory:
    """What a local LLM adds on this machine, when its server runs here."""

    label: str
    bytes: int
    device: str
    """`cuda` (Ollama puts what fits on the GPU) or `cpu` (the llama.cpp child)."""
    resident: bool = False
    """Already loaded: its memory is already out of the free figure, so it adds nothing."""


def memory_check(
    device: str,
    free: int,
    total: int,
    front: FrontendMemory,
    front_int8: FrontendMemory | None,
    stt: int,
    stt_device: str,
    llm: LlmMemory | None,
) -> Check:
    """Free memory on the front-end's device against the plan for this setup."""
    where = "VRAM" if device == "cuda" else "RAM"
    parts: dict[str, int | float | str | None] = {
        "frontend_weights": front.weights,
        "frontend_kv_cache": front.kv_cache,
        "mimi": front.mimi,
        "runtime_allowance": front.allowance,
    }
    needed = front.total
    if stt_device == device:
        parts["stt"] = stt
        needed += stt
    core = needed  # front-end + STT must fit; the LLM may spill over (Ollama runs the rest on CPU)
    llm_note = ""
    if llm is not None and llm.device == device:
        parts["llm"] = 0 if llm.resident else llm.bytes
        if not llm.resident:
            needed += llm.bytes
        llm_note = f", {llm.label}"
    mode = "int8" if front.int8 else ("fp32" if device == "cpu" else "16-bit")
    summary = (
        f"{where} plan {gib(needed)} (front-end {mode} {gib(front.total)}"
        f"{', STT ' + gib(stt) if stt_device == device else ''}{llm_note}) of {gib(free)} free"
        f" ({gib(total)} total)"
    )
    # kame serve batches sessions on one front-end and one STT: each adds only its own state.
    beside = needed - front.total
    sessions = front.sessions_fitting(free, beside)
    if device == "cuda":  # on a CPU the step's time, not memory, bounds the sessions
        summary += f"; kame serve: ~{sessions} sessions at {gib(front.per_session)} each (estimate)"
    details: Details = {
        "device": device,
        "free_bytes": free,
        "total_bytes": total,
        "needed_bytes": needed,
        "parts": parts,
        "int8_needed_bytes": None if front_int8 is None else core - front.total + front_int8.total,
        "per_session_bytes": front.per_session,
        "suggested_max_sessions": sessions,
    }
    if core > free:
        fix = "close other GPU work or use a GPU with more memory"
        if front_int8 is not None and core - front.total + front_int8.total <= free:
            fix = f"kame talk --quantize int8 (front-end {gib(front_int8.total)}, fits)"
        elif device == "cpu":
            fix = "use a GPU, or the offline demo (--profile offline)"
        return Check("memory", "fail", summary, fix, details)
    if needed > free:
        return Check(
            "memory",
            "warn",
            summary,
            "the LLM will not fit beside the voice: Ollama runs the rest on the CPU (slower answers); "
            "pick a smaller LLM or a cloud profile",
            details,
        )
    return Check("memory", "ok", summary, None, details)
