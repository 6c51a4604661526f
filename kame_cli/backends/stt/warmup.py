"""The recognizer's first decode, made before the session starts, at the largest sizes it will use.

The first decodes of a session allocate what every later one reuses: Silero VAD's onnxruntime
buffers, CTranslate2's encoder and beam-search buffers at the longest window. Left to the first
turns, that is tens of MB of growth in the back-end while the user talks (measured in one process,
tiny.en, 12 spoken turns: +88 MB from load without a warm-up, +19 MB after this one). Quiet noise
is enough: what is allocated depends on the sizes, not on the words.
"""

from __future__ import annotations

import numpy as np

from kame_cli.backends.stt.audio import WHISPER_RATE, StreamingVad
from kame_cli.backends.stt.config import SttConfig
from kame_cli.backends.stt.decoder import MAX_CONTEXT_TOKENS, WindowDecoder, Word
from kame_cli.backends.stt.model import SttModel

_NOISE_RMS = 1e-3  # -60 dBFS: the VAD and the decoder run their whole path, and hear nothing


def warm_up(model: SttModel, cfg: SttConfig) -> None:
    """One VAD pass and one decode of a `max_window_s` window with a full prompt (the finals' beam)."""
    noise = np.random.default_rng(0).standard_normal(round(cfg.max_window_s * WHISPER_RATE))
    noise = (noise * _NOISE_RMS).astype(np.float32)
    StreamingVad().push(noise[:WHISPER_RATE])  # the VAD's onnxruntime session is shared
    token = model.tokenizer.encode(" the")
    context = [Word(" the", tuple(token), "")] * MAX_CONTEXT_TOKENS
    WindowDecoder(model, cfg).decode(noise, context=context)
