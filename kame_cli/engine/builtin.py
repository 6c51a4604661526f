"""Built-in front-ends that need no download: `random:tiny` (CPU real time) and `random:7b`.

Also the pieces that tiny checkpoints are made of (configs, a small trained tokenizer, random
codebooks), shared with `tests/support/checkpoints.py` so tests load what the CLI would run.
"""

from __future__ import annotations

import copy
import io
import itertools
from typing import Any

import torch

TINY = "random:tiny"
FULL_7B = "random:7b"
BUILTIN_MODELS = (TINY, FULL_7B)

# SEANet ratios multiply to 960 and Mimi halves the 25 Hz encoder rate: 1920 samples (80 ms) a frame.
_TINY_SEANET: dict[str, Any] = {
    "channels": 1,
    "dimension": 32,
    "causal": True,
    "n_filters": 4,
    "n_residual_layers": 1,
    "activation": "ELU",
    "compress": 2,
    "dilation_base": 2,
    "disable_norm_outer_blocks": 0,
    "kernel_size": 7,
    "residual_kernel_size": 3,
    "last_kernel_size": 3,
    "norm": "none",
    "pad_mode": "constant",
    "ratios": [8, 6, 5, 4],
    "true_skip": True,
}
TINY_MIMI_CONFIG: dict[str, Any] = {
    "sample_rate": 24000,
    "channels": 1,
    "frame_rate": 12.5,
    "seanet": _TINY_SEANET,
    "quantizer": {"dimension": 16, "n_q": 8, "bins": 64, "input_dimension": 32, "output_dimension": 32},
    "transformer": {
        "d_model": 32,
        "num_heads": 2,
        "num_layers": 1,
        "causal": True,
        "layer_scale": 0.01,
        "context": 250,
        "conv_layout": True,
        "max_period": 10000,
        "gating": "none",
        "norm": "layer_norm",
        "positional_embedding": "rope",
        "dim_feedforward": 64,
        "input_dimension": 32,
        "output_dimensions": [32],
    },
}


def tiny_lm_config(text_card: int) -> dict[str, Any]:
    """Moshi's LM layout (16 audio streams, 8 generated, same delays) at a tiny width."""
    from moshi.models.loaders import _lm_kwargs

    config = copy.deepcopy(_lm_kwargs)
    config.update(
        dim=64,
        text_card=text_card,
        card=TINY_MIMI_CONFIG["quantizer"]["bins"],
        num_heads=4,
        num_layers=2,
        context=250,
        depformer_dim=32,
        depformer_dim_feedforward=132,
        depformer_num_heads=2,
        depformer_num_layers=1,
    )
    return config


def full_lm_config() -> dict[str, Any]:
    """The released Moshi 7B LM configuration."""
    from moshi.models.loaders import _lm_kwargs

    return copy.deepcopy(_lm_kwargs)


def full_mimi_config() -> dict[str, Any]:
    from moshi.models.loaders import _mimi_config

    return copy.deepcopy(_mimi_config)


_CORPUS_TEXT = (
    "hello hi yes no okay sure thanks thank you please sorry well so and but or because the a an "
    "what when where who why how which is are was were be been do does did can could would should "
    "will i you he she it we they me my your our their this that these those here there now then "
    "today tomorrow yesterday morning evening night time day week year minute hour second number "
    "one two three four five six seven eight nine ten hundred thousand water boiling point degrees "
    "celsius fahrenheit capital city country france paris japan tokyo river mountain ocean sun moon "
    "earth planet star light sound music weather rain snow cold hot warm good great nice bad answer "
    "question think know tell say speak listen hear see look want need like love help work play "
    "about with from into over under after before again still just also very really quite much many"
)


def _corpus() -> list[str]:
    # Deterministic sentences from a fixed word list: same tokenizer on every run and machine.
    words = _CORPUS_TEXT.split()
    lines = []
    for i, (a, b, c) in enumerate(itertools.islice(itertools.product(words, repeat=3), 0, None, 97)):
        lines.append(f"{a} {b} {c} {words[i % len(words)]}. {b.capitalize()} {a}?")
        if len(lines) >= 600:
            break
    lines.extend(words)
    return lines


def train_tiny_tokenizer(vocab_size: int = 256) -> bytes:
    """A small sentencepiece model with Moshi's special ids (padding = 3), as a serialized proto."""
    import sentencepiece

    out = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus()),
        model_writer=out,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=3,
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )
    return out.getvalue()


def randomize_codebooks(mimi: torch.nn.Module, generator: torch.Generator | None = None) -> None:
    """Give a random Mimi distinct codebook vectors (fresh ones are all zero: every code would be 0)."""
    from moshi.quantization.core_vq import EuclideanCodebook

    for module in mimi.modules():
        if isinstance(module, EuclideanCodebook):
            values = torch.randn(module.embedding_sum.shape, generator=generator)
            module.embedding_sum.copy_(values.to(module.embedding_sum))
            module.cluster_usage.fill_(1.0)
            module._initialized.fill_(1.0)
            module.register_buffer("_embedding", None, persistent=False)
