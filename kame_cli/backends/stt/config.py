"""Streaming STT settings, as read from a profile's `[stt]` table.

Each field declares its own type, bounds and documentation (see `kame_cli.settings`).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field

from kame_cli.settings import INT64_MAX, SETTINGS, NonEmpty

SttDevice = Literal["auto", "cuda", "cpu"]
ComputeType = Literal[
    "auto",
    "default",
    "int8",
    "int8_float32",
    "int8_float16",
    "int8_bfloat16",
    "int16",
    "float16",
    "bfloat16",
    "float32",
]
"""CTranslate2's compute types (whether the device supports one is checked when the model loads)."""
STT_DEVICES: tuple[str, ...] = typing.get_args(SttDevice)
COMPUTE_TYPES: tuple[str, ...] = typing.get_args(ComputeType)
_WHISPER_INPUT_S = 30.0  # Whisper's encoder takes at most 30 s of audio


@dataclass(frozen=True, slots=True)
class SttConfig:
    """faster-whisper model and the streaming recognizer's timing."""

    __pydantic_config__ = SETTINGS

    model: NonEmpty = "auto"
    """A faster-whisper size name, a local CTranslate2 directory, or `auto` (by device)."""
    device: SttDevice = "auto"
    """`cuda`, `cpu` or `auto` (CUDA when CTranslate2 sees a GPU)."""
    compute_type: ComputeType = "auto"
    """A CTranslate2 compute type; `auto`: int8 on CPU, float16 on CUDA."""
    beam_size: Annotated[int, Field(ge=1, le=16)] = 1
    """Beam of the whole-turn decode that gives the final transcript (wider: more accurate, slower)."""
    partial_beam_size: Annotated[int, Field(ge=1, le=16)] = 1
    """Beam of the partial decodes, run every `step_s`: 1 keeps them cheap."""
    language: NonEmpty = "en"
    """The spoken language (a Whisper language code); `.en` models know only English."""
    cpu_threads: Annotated[int, Field(ge=1, le=256)] = 1
    """CTranslate2 threads on CPU: 1 measured best on 2 cores while the front-end also runs."""
    download_root: NonEmpty | None = None
    """Where hub models are cached; None: the Hugging Face cache."""
    step_s: Annotated[float, Field(gt=0)] = 0.25
    """How often the growing window is re-decoded (seconds of audio)."""
    min_audio_s: Annotated[float, Field(ge=0)] = 0.5
    """No partial decode before this much speech (short buffers make Whisper hallucinate)."""
    min_commit_s: Annotated[float, Field(ge=0)] = 1.0
    """No word is committed before the turn holds this much audio: two decodes of a shorter
    window can agree on the same wrong guess."""
    max_window_s: Annotated[float, Field(gt=0, le=_WHISPER_INPUT_S)] = 15.0
    """Hard cap on the decoded window; past it, tentative words are committed and cut off."""
    trim_window_s: Annotated[float, Field(gt=0)] = 6.0
    """Past this window length, cut the window after its committed words (bounded decode cost)."""
    pad_s: Annotated[float, Field(ge=0)] = 1.0
    """Silence appended to the encoder input after the real audio (the encoder sees no 30 s pad)."""
    min_encoder_s: Annotated[float, Field(ge=0, le=_WHISPER_INPUT_S)] = 6.0
    """The encoder input is padded with silence to at least this long: shorter inputs are misheard."""
    max_tokens_per_s: Annotated[float, Field(gt=0)] = 6.0
    """Cap on generated tokens per second of new audio: stops hallucination loops on short windows."""
    end_silence_ms: Annotated[int, Field(gt=0, le=INT64_MAX)] = 600
    """Silence after speech that ends the user's turn (a final transcript)."""
    vad_threshold: Annotated[float, Field(gt=0, lt=1)] = 0.5
    """Silero VAD's speech probability above which a frame counts as speech."""
    vad_follow_channel: bool = True
    """Scale the VAD thresholds down to the speech level the stream's turns read (a phone line's
    speech reads 0.4-0.8, clear speech ~0.97): turns are not cut mid-sentence on telephone audio."""
    min_speech_ms: Annotated[int, Field(ge=0, le=INT64_MAX)] = 250
    """Speech shorter than this (in all) in a turn is dropped as a click or noise."""
    speech_pad_ms: Annotated[int, Field(ge=0, le=INT64_MAX)] = 300
    """Audio kept before speech starts and after it ends, so word edges are not clipped."""
    queue_frames: Annotated[int, Field(ge=1, le=INT64_MAX)] = 250
    """Frames (80 ms) the real-time thread may queue ahead of the worker; more are dropped."""
