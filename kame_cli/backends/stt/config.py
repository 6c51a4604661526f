"""Streaming STT settings, as read from a profile's `[stt]` table."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SttConfig:
    """faster-whisper model and the streaming recognizer's timing."""

    model: str = "auto"
    """A faster-whisper size name, a local CTranslate2 directory, or `auto` (by device)."""
    device: str = "auto"
    """`cuda`, `cpu` or `auto` (CUDA when CTranslate2 sees a GPU)."""
    compute_type: str = "auto"
    """A CTranslate2 compute type; `auto`: int8 on CPU, float16 on CUDA."""
    beam_size: int = 1
    language: str = "en"
    cpu_threads: int = 1
    download_root: str | None = None
    """Where hub models are cached; None: the Hugging Face cache."""
    step_s: float = 0.25
    """How often the growing window is re-decoded (seconds of audio)."""
    min_audio_s: float = 0.5
    """No partial decode before this much speech (short buffers make Whisper hallucinate)."""
    max_window_s: float = 15.0
    """Hard cap on the decoded window; past it, tentative words are committed and cut off."""
    trim_window_s: float = 6.0
    """Past this window length, cut the window after its committed words (bounded decode cost)."""
    pad_s: float = 1.0
    """Silence appended to the encoder input after the real audio (the encoder sees no 30 s pad)."""
    min_encoder_s: float = 6.0
    """The encoder input is padded with silence to at least this long: shorter inputs are misheard."""
    max_tokens_per_s: float = 6.0
    """Cap on generated tokens per second of new audio: stops hallucination loops on short windows."""
    end_silence_ms: int = 600
    """Silence after speech that ends the user's turn (a final transcript)."""
    vad_threshold: float = 0.5
    min_speech_ms: int = 250
    """Speech shorter than this (in all) in a turn is dropped as a click or noise."""
    speech_pad_ms: int = 300
    """Audio kept before speech starts and after it ends, so word edges are not clipped."""
    queue_frames: int = 250
    """Frames (80 ms) the real-time thread may queue ahead of the worker; more are dropped."""
