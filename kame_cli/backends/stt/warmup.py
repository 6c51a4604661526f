"""The recognizer's first decode, made before the session starts, at the largest sizes it will use.

The first decodes of a session allocate what every later one reuses: Silero VAD's onnxruntime
buffers, CTranslate2's encoder and beam-search buffers at the longest window. Left to the first
turns, that is tens of MB of growth in the back-end while the user talks (measured in one process,
tiny.en, 12 spoken turns: +88 MB from load without a warm-up, +19 MB after this one). Quiet noise
is enough: what is allocated depends on the sizes, not on the words.

The sizes are the encoder's window and the prompt's length, not how many tokens are then generated:
decoding up to the window's token budget (some 130 tokens of " the" on this prompt) took 1.0 CPU-s on
tiny.en, and 4 new tokens 0.4 CPU-s, with the same RSS after it (228 MB) and the same growth over 12
real turns (1.6 and 1.7 MB; 65 MB without a warm-up). Every back-end start pays it.
"""

from __future__ import annotations

import numpy as np

from kame_cli.backends.stt.audio import WHISPER_RATE, StreamingVad
from kame_cli.backends.stt.config import SttConfig
from kame_cli.backends.stt.decoder import MAX_CONTEXT_TOKENS, WindowDecoder, Word
from kame_cli.backends.stt.model import SttModel

_NOISE_RMS = 1e-3  # -60 dBFS: the VAD and the decoder run their whole path, and hear nothing
_FEWEST_TOKENS = 1e-9
"""New tokens per second of audio: the decoder's floor of 4 new tokens (see above)."""


def warm_up(model: SttModel, cfg: SttConfig) -> None:
    """One VAD pass and one decode of a `max_window_s` window with a full prompt (the finals' beam),
    stopped after a few new tokens."""
    noise = np.random.default_rng(0).standard_normal(round(cfg.max_window_s * WHISPER_RATE))
    noise = (noise * _NOISE_RMS).astype(np.float32)
    StreamingVad().push(noise[:WHISPER_RATE])  # the VAD's onnxruntime session is shared
    token = model.tokenizer.encode(" the")
    context = [Word(" the", tuple(token), "")] * MAX_CONTEXT_TOKENS
    WindowDecoder(model, cfg).decode(noise, context=context, token_rate=_FEWEST_TOKENS)
