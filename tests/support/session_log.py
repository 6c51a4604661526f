"""A small, complete session log folder without running a session: the events one short turn makes
(every event type, in the order and on the clock a session writes them), through the log writer's
own codec, beside real espeak-ng speech as input.wav and a tone as output.wav."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

from kame_cli.clock import FRAME_SECONDS
from kame_cli.events import (
    AecStatus,
    AudioXrun,
    BackendStatus,
    DeadlineMiss,
    Event,
    FinalTranscript,
    FramesDropped,
    FrontendText,
    OracleChunk,
    OracleFed,
    OracleFinished,
    OracleRequestStarted,
    PartialTranscript,
    ProcessEnded,
    ProcessStarted,
    Retrieval,
    SessionSummary,
    StepTiming,
    ToolCallFinished,
    ToolCallStarted,
)
from kame_cli.session.logfile import encode_events, with_session_marks
from tests.support.speech import speak

START_TOKEN = 256
ORIGIN = 1.5


def session_events(audio_s: float) -> list[Event]:
    """One user turn ("what is the capital of France") and its answer, as a session logs them."""
    steps = int(audio_s / FRAME_SECONDS) + 10
    t = ORIGIN
    events: list[Event] = [
        ProcessStarted(0.01, "frontend", 4242, 1),
        ProcessStarted(0.02, "backend", 4243, 1),
        BackendStatus(1.2, "stt", "ok", "tiny.en ready"),
        BackendStatus(ORIGIN, "session", "ok", "started"),
    ]
    for k in range(steps):
        t = ORIGIN + (k + 1) * FRAME_SECONDS + 0.012
        events.append(StepTiming(t, k, 3.0, 5.0, 2.0, 10.0 + (k % 7), 0.0))
        if k == 12:
            events.append(PartialTranscript(t, "what is", "the", 0.9, 0.3))
        if k == 20:
            events.append(PartialTranscript(t, "what is the capital", "", 1.6, 0.3, pause=True))
            events.append(OracleRequestStarted(t, 1, "pause", "what is the capital"))
            events.append(Retrieval(t, 1, 4.2, "ok", 180, "what is the capital", ("atlas.md > France",)))
            events.append(ToolCallStarted(t, 1, "call_1", "atlas", "capital_of", '{"country": "France"}'))
        if k == 21:
            events.append(ToolCallFinished(t, 1, "call_1", "atlas", "capital_of", "ok", 70.0, 5, False, ""))
        if k == 22:
            events.append(OracleChunk(t, 1, "Paris", (11, 12), True, 160.0))
            events.append(OracleFed(t, k, START_TOKEN, 2))
        if k in (23, 24):
            events.append(OracleFed(t, k, 11 + k - 23, 24 - k))
            events.append(FrontendText(t, k, " Paris" if k == 23 else " it is"))
        if k == 25:
            events.append(FinalTranscript(t, "What is the capital?", 0.3, 1.7, "what is the capital"))
            events.append(OracleFinished(t, 1, "completed", "Paris"))
            events.append(DeadlineMiss(t, k, 95.0, 80.0))
            events.append(AudioXrun(t, "output_underrun", 1))
            events.append(AecStatus(t, None, 12.0, None, 0.4))
        if k == 30:
            events.append(FramesDropped(t, k, 2, 2, 260.0))
    events += [
        SessionSummary(t + 0.05, steps, 1, 2, 0, 0, 0),
        ProcessEnded(t + 0.06, "backend", 4243, 0, True, "session end"),
        ProcessEnded(t + 0.07, "frontend", 4242, 0, True, "session end"),
        BackendStatus(t + 0.08, "session", "ok", "stopped"),
    ]
    return events


def write_session_log(folder: Path, speech: Path | None = None) -> Path:
    """A log folder at `folder` (created): events.jsonl, input.wav (speech) and output.wav."""
    folder.mkdir(parents=True)
    wav = folder / "input.wav"
    if speech is not None:
        wav.write_bytes(speech.read_bytes())
    else:
        speak("What is the capital of France?", wav, rate=16_000)
    audio_s = soundfile.info(str(wav)).duration
    tone = 0.2 * np.sin(np.arange(int(audio_s * 24_000)) * 2 * np.pi * 180 / 24_000)
    soundfile.write(folder / "output.wav", tone.astype(np.float32), 24_000, subtype="PCM_16")
    (folder / "events.jsonl").write_bytes(encode_events(with_session_marks(session_events(audio_s))))
    return folder
