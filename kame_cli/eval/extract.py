"""One session's log read into a `TurnAnswer` per question turn.

The log is read with the session layer's typed reader (`kame_cli.session.record`, through
`read_log()`), and the turns and the informed oracle are found as the tandem bench
finds them (`kame_cli.tandem.measures`): the two tools measure the same things the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kame_cli.eval.answers import TurnAnswer

if TYPE_CHECKING:
    import numpy as np

    from kame_cli.backends.stt.config import SttConfig
    from kame_cli.tandem.oracle_trace import Generation

_WHISPER_RATE = 16_000


class OutputTranscriber:
    """An offline transcript of the voice's audio (the profile's STT model, loaded on first use)."""

    def __init__(self, stt: SttConfig) -> None:
        self._stt = stt
        self._model: Any = None

    def transcribe(self, audio: np.ndarray, rate: int) -> str:
        if len(audio) < rate // 4:
            return ""
        if self._model is None:
            from faster_whisper import WhisperModel

            from kame_cli.backends.stt.model import load_stt_model

            loaded = load_stt_model(self._stt)
            self._model = WhisperModel(
                loaded.path, device=loaded.device, compute_type=loaded.compute_type, cpu_threads=1
            )
        from kame_cli.audio_io.resampling import resampled

        segments, _ = self._model.transcribe(
            resampled(audio, rate, _WHISPER_RATE),
            beam_size=1,
            language="en",
            condition_on_previous_text=False,
        )
        return " ".join(s.text.strip() for s in segments).strip()  # the decode runs while iterating


def session_answers(
    log_dir: Path,
    texts: Sequence[str],
    spans: Sequence[tuple[float, float, str]],
    *,
    paced: bool,
    end_silence_ms: int,
    transcriber: OutputTranscriber | None,
) -> list[TurnAnswer]:
    """A `TurnAnswer` per spoken turn (`spans`: each turn's start and end of gap in the input audio)."""
    from kame_cli.events import FrontendText
    from kame_cli.session.record import read_session
    from kame_cli.tandem.measures import informed, measure_turns, turns_in_spans, vad_segments
    from kame_cli.tandem.oracle_trace import trace_generations

    record = read_session(log_dir, paced=paced)
    audio, rate = record.input_audio()
    turns = turns_in_spans(vad_segments(audio, rate, end_silence_ms), spans)
    figures = measure_turns(record, turns)
    generations, _ = trace_generations(record.events)
    pieces = record.of_type(FrontendText)
    output = record.output_audio() if transcriber is not None else None
    answers = []
    for index, fig in enumerate(figures):
        next_start = turns[index + 1].start if index + 1 < len(turns) else None
        window_end = record.audio_to_clock(next_start) if next_start is not None else math.inf
        reply = [p for p in pieces if fig.eos_t <= p.t < window_end]
        voice = " ".join("".join(p.text for p in reply).replace("\u2581", " ").split())
        transcript = ""
        if output is not None and transcriber is not None:
            out_audio, out_rate = output
            # The output holds one frame per input frame: input audio time is output audio time.
            end = len(out_audio) if next_start is None else round(next_start * out_rate)
            transcript = transcriber.transcribe(out_audio[round(turns[index].end * out_rate) : end], out_rate)
        mine = [generations[n] for n in fig.generations if n in generations]
        answers.append(
            TurnAnswer(
                turn=index,
                question=texts[index],
                final_text=fig.final_text,
                voice_text=voice,
                voice_transcript=transcript,
                oracle_text=_last_informed(mine, fig.final_text, informed) or fig.oracle_text,
                onset_s=_r(reply[0].t - fig.eos_t) if reply else None,
                informed_s=_r(fig.informed_s),
                eos_to_final_s=_r(fig.eos_to_final_s),
            )
        )
    return answers


def _last_informed(generations: Sequence[Generation], final_text: str, is_informed: Any) -> str:
    """The text of the turn's last request that knew the whole question (the most complete answer)."""
    knowing = [g for g in generations if g.chunks and final_text and is_informed(g.user_text, final_text)]
    return " ".join(knowing[-1].text.split()) if knowing else ""


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
