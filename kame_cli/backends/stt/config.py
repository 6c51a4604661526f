"""Streaming STT settings, as read from a profile's `[stt]` table.

Range checks live in each field's metadata (`ge`, `gt`, `le`, `lt`, `choices`, `nonempty`), so the
profile loader reports the file and key at fault without knowing this class.
"""

from __future__ import annotations

from dataclasses import dataclass, field

STT_DEVICES = ("auto", "cuda", "cpu")
COMPUTE_TYPES = (
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
)
"""CTranslate2's compute types (whether the device supports one is checked when the model loads)."""
_WHISPER_INPUT_S = 30.0  # Whisper's encoder takes at most 30 s of audio


@dataclass(frozen=True, slots=True)
class SttConfig:
    """faster-whisper model and the streaming recognizer's timing."""

    model: str = field(default="auto", metadata={"nonempty": True})
    """A faster-whisper size name, a local CTranslate2 directory, or `auto` (by device)."""
    device: str = field(default="auto", metadata={"choices": STT_DEVICES})
    """`cuda`, `cpu` or `auto` (CUDA when CTranslate2 sees a GPU)."""
    compute_type: str = field(default="auto", metadata={"choices": COMPUTE_TYPES})
    """A CTranslate2 compute type; `auto`: int8 on CPU, float16 on CUDA."""
    beam_size: int = field(default=1, metadata={"ge": 1, "le": 16})
    """Beam of the whole-turn decode that gives the final transcript (wider: more accurate, slower)."""
    partial_beam_size: int = field(default=1, metadata={"ge": 1, "le": 16})
    """Beam of the partial decodes, run every `step_s`: 1 keeps them cheap."""
    language: str = field(default="en", metadata={"nonempty": True})
    cpu_threads: int = field(default=1, metadata={"ge": 1, "le": 256})
    download_root: str | None = field(default=None, metadata={"nonempty": True})
    """Where hub models are cached; None: the Hugging Face cache."""
    step_s: float = field(default=0.25, metadata={"gt": 0})
    """How often the growing window is re-decoded (seconds of audio)."""
    min_audio_s: float = field(default=0.5, metadata={"ge": 0})
    """No partial decode before this much speech (short buffers make Whisper hallucinate)."""
    min_commit_s: float = field(default=1.0, metadata={"ge": 0})
    """No word is committed before the turn holds this much audio: two decodes of a shorter
    window can agree on the same wrong guess."""
    max_window_s: float = field(default=15.0, metadata={"gt": 0, "le": _WHISPER_INPUT_S})
    """Hard cap on the decoded window; past it, tentative words are committed and cut off."""
    trim_window_s: float = field(default=6.0, metadata={"gt": 0})
    """Past this window length, cut the window after its committed words (bounded decode cost)."""
    pad_s: float = field(default=1.0, metadata={"ge": 0})
    """Silence appended to the encoder input after the real audio (the encoder sees no 30 s pad)."""
    min_encoder_s: float = field(default=6.0, metadata={"ge": 0, "le": _WHISPER_INPUT_S})
    """The encoder input is padded with silence to at least this long: shorter inputs are misheard."""
    max_tokens_per_s: float = field(default=6.0, metadata={"gt": 0})
    """Cap on generated tokens per second of new audio: stops hallucination loops on short windows."""
    end_silence_ms: int = field(default=600, metadata={"gt": 0})
    """Silence after speech that ends the user's turn (a final transcript)."""
    vad_threshold: float = field(default=0.5, metadata={"gt": 0, "lt": 1})
    min_speech_ms: int = field(default=250, metadata={"ge": 0})
    """Speech shorter than this (in all) in a turn is dropped as a click or noise."""
    speech_pad_ms: int = field(default=300, metadata={"ge": 0})
    """Audio kept before speech starts and after it ends, so word edges are not clipped."""
    queue_frames: int = field(default=250, metadata={"ge": 1})
    """Frames (80 ms) the real-time thread may queue ahead of the worker; more are dropped."""
