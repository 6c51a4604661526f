"""Streaming STT settings, as read from a profile's `[stt]` table."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SttConfig:
    """faster-whisper model and the streaming recognizer's timing."""

    model: str = "auto"
    """A faster-whisper size name, a local CTranslate2 directory, or `auto` (by device)."""
    device: str = "auto"
    compute_type: str = "auto"
    beam_size: int = 1
    language: str = "en"
    cpu_threads: int = 1
    step_s: float = 0.25
    """How often the growing window is re-decoded."""
    min_audio_s: float = 1.0
    """No decode before this much speech (short buffers make Whisper hallucinate)."""
    max_window_s: float = 15.0
    end_silence_ms: int = 600
    """Silence after speech that ends the user's turn (a final transcript)."""
    vad_threshold: float = 0.5
