"""`load_frontend`: one entry point for every front-end source, returning a ready `Frontend`."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from kame_cli.clock import FRAME_SAMPLES, SAMPLE_RATE
from kame_cli.engine import builtin
from kame_cli.engine.checkpoint import CheckpointFiles, resolve_checkpoint
from kame_cli.engine.config import FrontendConfig
from kame_cli.engine.model import OracleLMModel
from kame_cli.engine.weights import (
    cast_floats,
    load_state,
    loaded_bytes,
    read_safetensors,
    upgrade_oracle_keys,
)
from kame_cli.errors import CheckpointError, ConfigError, DeviceError

if TYPE_CHECKING:
    import sentencepiece
    from moshi.models.compression import MimiModel
    from moshi.models.lm import LMGen


_MOSHI_SAMPLING = {"temp": 0.8, "temp_text": 0.7, "top_k": 250, "top_k_text": 25}
"""moshi's `LMGen` defaults, used when neither the profile nor the checkpoint sets a value."""


@dataclass(frozen=True, slots=True)
class Sampling:
    """How the front-end samples its text and audio tokens; None: the checkpoint's own setting.

    A checkpoint's `config.json` may carry `lm_gen_config` (temperatures, top-k), as both reference
    servers pass to `LMGen`: it applies unless the profile or a flag sets the value.
    """

    temperature: float | None = None
    temperature_text: float | None = None
    top_k: int | None = None
    top_k_text: int | None = None

    @classmethod
    def from_config(cls, cfg: FrontendConfig) -> Sampling:
        return cls(cfg.temperature, cfg.temperature_text, cfg.top_k, cfg.top_k_text)

    def lm_gen_kwargs(self, checkpoint: Mapping[str, Any]) -> dict[str, Any]:
        """`LMGen`'s sampling arguments: these settings, else the checkpoint's, else moshi's."""
        mine = {
            "temp": self.temperature,
            "temp_text": self.temperature_text,
            "top_k": self.top_k,
            "top_k_text": self.top_k_text,
        }
        return {
            name: mine[name] if mine[name] is not None else checkpoint.get(name, default)
            for name, default in _MOSHI_SAMPLING.items()
        }


def checkpoint_sampling(raw: object, source: Path) -> dict[str, Any]:
    """The sampling part of a checkpoint's `lm_gen_config`, checked (CheckpointError if malformed).

    Other keys there (e.g. `cfg_coef`, which needs conditioning kame does not build) are ignored.
    """
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{source}: lm_gen_config must be an object (got {type(raw).__name__})")
    out: dict[str, Any] = {}
    for name in _MOSHI_SAMPLING:
        if name not in raw:
            continue
        value = raw[name]
        integer = name.startswith("top_k")
        ok = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok or not math.isfinite(value) or value < (1 if integer else 0):
            kind = "an integer >= 1" if integer else "a finite number >= 0"
            raise CheckpointError(f"{source}: lm_gen_config.{name} must be {kind} (got {value!r:.40})")
        out[name] = int(value) if integer else float(value)
    return out


@dataclass
class Frontend:
    """A loaded front-end: Mimi codec, oracle-aware LM and text tokenizer on one device."""

    name: str
    mimi: MimiModel
    lm: OracleLMModel
    text_tokenizer: sentencepiece.SentencePieceProcessor
    device: torch.device
    dtype: torch.dtype
    files: CheckpointFiles | None = None
    """None for the built-in random models."""
    oracle_from_text_emb: bool = False
    """True when the checkpoint was plain Moshi and `oracle_emb` started as a copy of `text_emb`."""
    lm_gen_config: dict[str, Any] = field(default_factory=dict)
    """The checkpoint's sampling settings (`temp`, `temp_text`, `top_k`, `top_k_text`) for `LMGen`."""
    cpu_threads: int = 1
    sample_rate: int = SAMPLE_RATE
    frame_size: int = FRAME_SAMPLES
    quantized: bool = False
    """The LM's linear layers are int8 (`--quantize int8`, or a `-q8` checkpoint)."""

    @property
    def text_start_id(self) -> int:
        return self.lm.text_initial_token_id

    @property
    def text_padding_id(self) -> int:
        return self.lm.text_padding_token_id

    def step_context(self) -> contextlib.AbstractContextManager[object]:
        """What every stepping loop runs under. On CPU, no torch.compile: its first step there costs
        10-25 s of compiling and needs a C++ compiler on the user's machine; on CUDA moshi keeps its
        compiled step and CUDA graphs."""
        if self.device.type == "cpu":
            from moshi.utils.compile import no_compile

            return no_compile()
        return contextlib.nullcontext()

    def make_lm_gen(self, sampling: Sampling | None = None) -> LMGen:
        """A fresh moshi `LMGen` over this LM (enter its `streaming(1)` before stepping)."""
        from moshi.models.lm import LMGen

        kwargs = (sampling or Sampling()).lm_gen_kwargs(self.lm_gen_config)
        return LMGen(self.lm, **kwargs)

    def text_piece(self, token_id: int) -> str | None:
        """The text an inner-monologue token stands for, or None for padding and special tokens."""
        sp = self.text_tokenizer
        if token_id in (self.lm.text_padding_token_id, self.lm.end_of_text_padding_id):
            return None
        if not 0 <= token_id < sp.vocab_size() or sp.is_control(token_id) or sp.is_unknown(token_id):
            return None
        return sp.id_to_piece(token_id).replace("▁", " ")


def resolve_device(choice: str) -> torch.device:
    """`auto` -> CUDA when torch sees a GPU, else CPU; asking for CUDA without one is a `DeviceError`."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("device 'cuda': torch sees no CUDA GPU here: use --device cpu (or auto)")
        return torch.device("cuda")
    if choice == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"device '{choice}': expected auto, cuda or cpu")


def run_dtype(device: torch.device, half: bool) -> torch.dtype:
    """bf16 on CUDA (fp16 with `half`, for GPUs older than Ampere); fp32 on CPU."""
    if device.type != "cuda":
        return torch.float32
    if half:
        return torch.float16
    if not torch.cuda.is_bf16_supported():
        raise DeviceError(f"{torch.cuda.get_device_name(device)} has no bf16 support: run with --half (fp16)")
    return torch.bfloat16


def load_frontend(cfg: FrontendConfig, *, cache_dir: Path | None = None) -> Frontend:
    """Load the front-end `cfg` names: a built-in, a local directory or a Hugging Face repo id."""
    device = resolve_device(cfg.device)
    dtype = run_dtype(device, cfg.half)
    int8 = cfg.quantize == "int8"
    if int8:
        from kame_cli.engine.quantize import require_int8

        require_int8(device)  # before anything loads: CPU, or a GPU bitsandbytes has no kernel for
    if cfg.model == builtin.TINY:
        frontend = _tiny_frontend(device, dtype, cfg.cpu_threads)
        if int8:
            from kame_cli.engine.quantize import quantize_linears

            quantize_linears(frontend.lm, device)
            frontend.quantized = True
        return frontend
    if cfg.model == builtin.FULL_7B:
        # fp32 would need ~29 GiB on a CPU: the hardware check runs in bf16 there too.
        full_dtype = torch.bfloat16 if device.type == "cpu" else dtype
        return _full_random_frontend(device, full_dtype, cfg.cpu_threads, quantize=int8)
    files = resolve_checkpoint(cfg, cache_dir=cache_dir)
    return _checkpoint_frontend(cfg.model, files, device, dtype, cfg.cpu_threads, quantize=int8)


def _checkpoint_frontend(
    name: str,
    files: CheckpointFiles,
    device: torch.device,
    dtype: torch.dtype,
    cpu_threads: int,
    *,
    quantize: bool = False,
) -> Frontend:
    from moshi.models.loaders import CheckpointInfo, get_lora_moshi

    if files.config is None:
        info = CheckpointInfo(files.lm_weights, files.mimi_weights, files.tokenizer)  # legacy Moshi 7B repo
    else:
        # Every path is explicit, so moshi reads config.json and downloads nothing.
        info = CheckpointInfo.from_hf_repo(
            None,
            moshi_weights=files.lm_weights,
            mimi_weights=files.mimi_weights,
            tokenizer=files.tokenizer,
            config_path=files.config,
            mimi_config_path=files.mimi_config,
            lora_weights=files.lora_weights,
        )
    lm_kwargs = dict(info.lm_config) if info.lm_config is not None else builtin.full_lm_config()
    lora = (lm_kwargs.pop("lora", False), lm_kwargs.pop("lora_rank", 128), lm_kwargs.pop("lora_scaling", 2.0))
    lm_kwargs.pop("depformer_causal", None)  # deprecated moshi setting
    if "demux_second_stream" in lm_kwargs:
        lm_kwargs["demux_second_text_stream"] = lm_kwargs.pop("demux_second_stream")
    config_name = files.config or files.lm_weights
    if lm_kwargs.get("quantize") and device.type != "cuda":
        raise CheckpointError(
            f"{config_name}: 8-bit (q8) checkpoints run on CUDA only: use a bf16 repo on CPU"
        )

    q8_checkpoint = bool(lm_kwargs.get("quantize"))
    int8 = quantize and not q8_checkpoint  # a -q8 checkpoint is int8 already: loaded as it is
    if int8 and lora[0]:
        raise CheckpointError(
            f"{config_name}: a LoRA checkpoint cannot be quantized (moshi): drop --quantize"
        )

    lm = _build_lm(lm_kwargs, torch.device("meta"), dtype, config_name)
    if int8:
        from kame_cli.engine.quantize import int8_bytes, quantize_linears

        needed = int8_bytes(lm, dtype)
    else:
        needed = loaded_bytes(files.lm_weights, dtype)
    _ensure_fits(needed, device, f"{name} (LM weights)")
    # int8: staged on the CPU, then quantized layer by layer on the GPU (the bf16 LM never is there whole).
    state = read_safetensors(files.lm_weights, torch.device("cpu") if int8 else device)
    upgraded = upgrade_oracle_keys(state, lm, files.lm_weights)
    cast_floats(state, dtype)
    load_state(lm, state, files.lm_weights, assign=True)
    del state
    if int8:
        quantize_linears(lm, device)
    if lora[0]:
        if info.lora_weights is None:
            raise CheckpointError(f"{config_name}: lora is on but no lora_name names the LoRA weights")
        lm = get_lora_moshi(
            lm, info.lora_weights, lora_rank=lora[1], lora_scaling=lora[2], dtype=dtype, device=device
        )
    lm.eval()

    mimi = _build_mimi(info.mimi_config, lm, device, files.mimi_config or config_name)
    mimi_state = read_safetensors(files.mimi_weights, device)
    load_state(mimi, mimi_state, files.mimi_weights, assign=False)
    tokenizer = _load_tokenizer(files.tokenizer)
    _check_parts(lm, mimi, tokenizer, files)
    return Frontend(
        name=name,
        mimi=mimi,
        lm=lm,
        text_tokenizer=tokenizer,
        device=device,
        dtype=dtype,
        files=files,
        oracle_from_text_emb=upgraded,
        lm_gen_config=checkpoint_sampling(info.lm_gen_config, config_name),
        cpu_threads=cpu_threads,
        quantized=int8 or q8_checkpoint,
    )


def _build_lm(
    kwargs: dict[str, Any], device: torch.device, dtype: torch.dtype, source: Path
) -> OracleLMModel:
    try:
        return OracleLMModel(device=device, dtype=dtype, **kwargs)
    except (TypeError, ValueError, AssertionError, KeyError) as err:
        # moshi validates settings with asserts and keyword checks: all mean a bad config.json.
        raise CheckpointError(f"{source}: invalid LM settings ({type(err).__name__}: {err})") from None


def _build_mimi(
    mimi_config: dict[str, Any] | None, lm: OracleLMModel, device: torch.device, source: Path
) -> MimiModel:
    from moshi.models.loaders import get_mimi

    num_codebooks = max(lm.dep_q, lm.n_q - lm.dep_q)
    try:
        return get_mimi(None, mimi_config, device=device, num_codebooks=num_codebooks)
    except (TypeError, ValueError, AssertionError, KeyError) as err:
        raise CheckpointError(f"{source}: invalid Mimi settings ({type(err).__name__}: {err})") from None


def _load_tokenizer(path: Path) -> sentencepiece.SentencePieceProcessor:
    import sentencepiece

    try:
        return sentencepiece.SentencePieceProcessor(model_file=str(path))
    except (OSError, RuntimeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: not a sentencepiece tokenizer ({first})") from None


def _check_parts(
    lm: OracleLMModel,
    mimi: MimiModel,
    tokenizer: sentencepiece.SentencePieceProcessor,
    files: CheckpointFiles,
) -> None:
    if tokenizer.vocab_size() > lm.text_card:
        raise CheckpointError(
            f"{files.tokenizer}: {tokenizer.vocab_size()} pieces but the LM's text_card is {lm.text_card}: "
            "tokenizer and LM do not belong together"
        )
    if mimi.cardinality != lm.card:
        raise CheckpointError(
            f"{files.mimi_weights}: Mimi codebooks have {mimi.cardinality} entries, the LM expects {lm.card}"
        )
    if mimi.total_codebooks < max(lm.dep_q, lm.n_q - lm.dep_q):
        raise CheckpointError(
            f"{files.mimi_weights}: Mimi has {mimi.total_codebooks} codebooks, the LM needs {lm.dep_q}"
        )
    if mimi.frame_size != FRAME_SAMPLES or mimi.sample_rate != SAMPLE_RATE:
        raise CheckpointError(
            f"{files.mimi_weights}: Mimi frames are {mimi.frame_size} samples at {mimi.sample_rate} Hz; "
            f"kame needs {FRAME_SAMPLES} at {SAMPLE_RATE} Hz"
        )


# --- built-in random front-ends -----------------------------------------------------------------

_TINY_SEED = 1234


def _tiny_frontend(device: torch.device, dtype: torch.dtype, cpu_threads: int) -> Frontend:
    import sentencepiece
    from moshi.models.loaders import get_mimi

    tokenizer = sentencepiece.SentencePieceProcessor(model_proto=builtin.train_tiny_tokenizer())
    # Fixed weights: random:tiny behaves the same on every run, like a real checkpoint would.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_TINY_SEED)
        lm = OracleLMModel(device=device, dtype=dtype, **builtin.tiny_lm_config(tokenizer.vocab_size()))
        mimi = get_mimi(None, builtin.TINY_MIMI_CONFIG, device=device, num_codebooks=lm.dep_q)
        builtin.randomize_codebooks(mimi, torch.Generator().manual_seed(_TINY_SEED))
    lm.eval()
    return Frontend(builtin.TINY, mimi, lm, tokenizer, device, dtype, cpu_threads=cpu_threads)


def _full_random_frontend(
    device: torch.device, dtype: torch.dtype, cpu_threads: int, *, quantize: bool = False
) -> Frontend:
    import sentencepiece
    from moshi.models.loaders import get_mimi

    kwargs = builtin.full_lm_config()
    if quantize:
        kwargs["quantize"] = True  # moshi quantizes each layer as it builds it on the GPU
    _check_memory(kwargs, device, dtype)
    tokenizer = sentencepiece.SentencePieceProcessor(model_proto=builtin.train_tiny_tokenizer())
    lm = OracleLMModel(device=device, dtype=dtype, **kwargs)  # initialized in place on the device
    lm.eval()
    mimi = get_mimi(None, builtin.full_mimi_config(), device=device, num_codebooks=lm.dep_q)
    builtin.randomize_codebooks(mimi)
    return Frontend(
        builtin.FULL_7B, mimi, lm, tokenizer, device, dtype, cpu_threads=cpu_threads, quantized=quantize
    )


def _check_memory(kwargs: dict[str, Any], device: torch.device, dtype: torch.dtype) -> None:
    meta = OracleLMModel(device=torch.device("meta"), dtype=dtype, **kwargs)
    # Exact for int8 too: the meta model holds int8 weights and fp32 scales then.
    needed = sum(p.numel() * p.element_size() for p in meta.parameters())
    _ensure_fits(needed, device, "random:7b")


def _ensure_fits(needed: int, device: torch.device, what: str) -> None:
    """Refuse before allocating when the model cannot fit: an OOM kill gives no message."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        where = torch.cuda.get_device_name(device)
        fix = "use a GPU with more memory, or --half on a smaller model"
    else:
        import psutil

        free = psutil.virtual_memory().available
        where = "this machine's RAM"
        fix = "run it on a GPU (--device cuda), or use random:tiny"
    if needed * 1.1 > free:
        raise DeviceError(
            f"{what} needs ~{needed / 2**30:.1f} GiB but {where} has {free / 2**30:.1f} GiB free: {fix}"
        )
