"""The tandem's figures per user turn, from a session log (and the cascaded client's timings).

Definitions (docs/tandem.md, "What is measured"):
- end of speech: where the offline VAD (Silero, in faster-whisper) ends the turn's last speech
  segment in input.wav, on the session clock (paced input: the instant that audio arrived);
- informed request: one of the turn's oracle requests whose normalized user text contains the last
  `INFORMED_WORDS` words of the turn's final transcript (normalized), in order;
- (a) informed oracle: end of speech -> the first answer token of an informed request fed to the
  front-end (the step after its start token), the earliest such request;
- (b) any oracle: end of speech -> the first answer token of any of the turn's requests fed;
- (c) cascaded: end of speech -> final transcript (the session's own) + the cascaded client's time
  to first token on that final;
- (d) share of the front-end's text pieces in the reply window (end of speech to the next turn's
  speech, or the end of the log) emitted at or after (a);
- (e) restarts (requests that superseded a running one) and the LLM chunks streamed by cancelled
  requests (one streamed chunk per LLM token with llama.cpp and most servers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kame_cli.backends.stt.text import normalize_words
from kame_cli.events import FinalTranscript, FrontendText, PartialTranscript
from kame_cli.tandem.oracle_trace import Generation, trace_generations

if TYPE_CHECKING:
    import numpy as np

    from kame_cli.session.record import SessionRecord
    from kame_cli.tandem.cascade import CascadeResult

INFORMED_WORDS = 2
VAD_RATE = 16_000


@dataclass(frozen=True, slots=True)
class SpeechTurn:
    """One user turn in the input audio, as the offline VAD finds it (seconds of input audio)."""

    start: float
    end: float
    label: str = ""
    """What was said, when known (the bench's question text)."""


@dataclass
class TurnFigures:
    """Everything measured for one user turn; latencies in seconds, None where not reached."""

    index: int
    speech_start: float
    speech_end: float
    label: str
    eos_t: float
    final_text: str = ""
    final_t: float | None = None
    requests: int = 0
    restarts: int = 0
    wasted_tokens: int = 0
    informed_generation: int | None = None
    informed_text: str = ""
    oracle_text: str = ""
    """The informed request's answer, else the last answer of the turn's requests ("" if none came)."""
    informed_s: float | None = None
    any_s: float | None = None
    informed_first_chunk_s: float | None = None
    heard_s: float | None = None
    """End of speech -> the first partial (or the final) that held the final's last words: STT lag."""
    informed_request_s: float | None = None
    """End of speech -> the informed request's start (after `heard_s`, the restart policy's wait)."""
    eos_to_final_s: float | None = None
    cascade_ttft_s: float | None = None
    cascaded_s: float | None = None
    share_after_informed: float | None = None
    cascade_note: str = ""
    generations: list[int] = field(default_factory=list)

    def row(self) -> dict[str, object]:
        """The JSON row (rounded to the millisecond)."""
        out: dict[str, object] = {}
        for key, value in vars(self).items():
            out[key] = round(value, 4) if isinstance(value, float) else value
        return out


def vad_segments(audio: np.ndarray, rate: int, min_silence_ms: int = 600) -> list[tuple[float, float]]:
    """Speech segments (seconds) by Silero VAD without padding; silences shorter than
    `min_silence_ms` are kept inside a segment."""
    import numpy as np
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    from kame_cli.audio_io.resampling import StreamResampler

    audio16 = np.asarray(audio, np.float32)
    if rate != VAD_RATE:  # through the resampler the live audio path uses
        resampler = StreamResampler(rate, VAD_RATE)
        audio16 = np.concatenate([resampler.process(audio16), resampler.flush()])
    options = VadOptions(min_silence_duration_ms=min_silence_ms, speech_pad_ms=0, min_speech_duration_ms=150)
    stamps = get_speech_timestamps(audio16, options, sampling_rate=VAD_RATE)
    return [(s["start"] / VAD_RATE, s["end"] / VAD_RATE) for s in stamps]


def turns_from_segments(segments: Sequence[tuple[float, float]]) -> list[SpeechTurn]:
    return [SpeechTurn(start, end) for start, end in segments]


def turns_in_spans(
    segments: Sequence[tuple[float, float]], spans: Sequence[tuple[float, float, str]]
) -> list[SpeechTurn]:
    """One turn per known span (start, end, label): the VAD speech inside it, first start to last end.
    A span where the VAD finds no speech keeps its own bounds."""
    turns = []
    for start, end, label in spans:
        inside = [(s, e) for s, e in segments if s < end and e > start]
        if inside:
            turns.append(SpeechTurn(inside[0][0], min(inside[-1][1], end), label))
        else:
            turns.append(SpeechTurn(start, end, label))
    return turns


def informed(user_text: str, final_text: str, words: int = INFORMED_WORDS) -> bool:
    """The request's user text holds the final's last `words` words, in order (normalized)."""
    final = normalize_words(final_text)
    if not final:
        return False
    tail = final[-min(words, len(final)) :]
    held = normalize_words(user_text)
    return any(held[i : i + len(tail)] == tail for i in range(len(held) - len(tail) + 1))


def measure_turns(
    record: SessionRecord,
    turns: Sequence[SpeechTurn],
    cascades: Sequence[CascadeResult] = (),
) -> list[TurnFigures]:
    """(a)-(e) for each turn of `record` (see the module's docstring)."""
    generations, _ = trace_generations(record.events)
    finals = [e for e in record.of_type(FinalTranscript) if e.text.strip()]
    texts = record.of_type(FrontendText)
    partials = record.of_type(PartialTranscript)
    clock_starts = [record.audio_to_clock(turn.start) for turn in turns]
    final_turn = {id(f): _turn_of_final(f, turns) for f in finals}
    figures: list[TurnFigures] = []
    for index, turn in enumerate(turns):
        eos_t = record.audio_to_clock(turn.end)
        window_end = clock_starts[index + 1] if index + 1 < len(turns) else math.inf
        fig = TurnFigures(index + 1, turn.start, turn.end, turn.label, eos_t)
        own_finals = [f for f in finals if final_turn[id(f)] == index]
        final = own_finals[-1] if own_finals else None
        if final is not None:
            fig.final_text = " ".join(f.text.strip() for f in own_finals)
            fig.final_t = final.t
            fig.eos_to_final_s = final.t - eos_t
        gens = [
            g
            for g in generations.values()
            if _turn_of_generation(g, finals, final_turn, clock_starts) == index
        ]
        fig.generations = [g.number for g in gens]
        fig.requests = len(gens)
        fig.restarts = sum(g.restart for g in gens)
        fig.wasted_tokens = sum(len(g.chunks) for g in gens if g.outcome == "cancelled")
        answered = [g for g in gens if g.chunks]
        if answered:
            fig.oracle_text = answered[-1].text
        fed = [g.first_fed_t for g in gens if g.first_fed_t is not None]
        if fed:
            fig.any_s = min(fed) - eos_t
        if final is not None:
            knowing = [g for g in gens if g.first_fed_t is not None and informed(g.user_text, final.text)]
            if knowing:
                best = min(knowing, key=lambda g: g.first_fed_t or math.inf)
                assert best.first_fed_t is not None
                fig.informed_generation = best.number
                fig.informed_text = fig.oracle_text = best.text
                fig.informed_s = best.first_fed_t - eos_t
                fig.informed_request_s = best.started_t - eos_t
                if best.first_chunk_t is not None:
                    fig.informed_first_chunk_s = best.first_chunk_t - eos_t
            heard = [
                p.t
                for p in partials
                if clock_starts[index] <= p.t <= final.t and informed(p.text, final.text)
            ]
            fig.heard_s = (heard[0] if heard else final.t) - eos_t
            cascade = next((c for c in cascades if abs(c.final_t - final.t) < 1e-6), None)
            if cascade is not None:
                fig.cascade_ttft_s = cascade.ttft_s
                fig.cascade_note = cascade.note
                if cascade.ttft_s is not None:
                    fig.cascaded_s = (final.t - eos_t) + cascade.ttft_s
        reply = [p for p in texts if eos_t <= p.t < window_end]
        if reply:
            after = sum(1 for p in reply if fig.informed_s is not None and p.t >= eos_t + fig.informed_s)
            fig.share_after_informed = after / len(reply)
        figures.append(fig)
    return figures


def _turn_of_final(final: FinalTranscript, turns: Sequence[SpeechTurn]) -> int | None:
    # The STT's own VAD ends the final near the offline VAD's end: the turn whose speech it closes
    # is the last one that started before that point.
    best = None
    for index, turn in enumerate(turns):
        if turn.start <= final.audio_end + 0.25:
            best = index
    return best


def _turn_of_generation(
    gen: Generation,
    finals: Sequence[FinalTranscript],
    final_turn: dict[int, int | None],
    clock_starts: Sequence[float],
) -> int | None:
    if gen.reason == "final":
        # Started on a final: the turn of the last final published before it.
        before = [f for f in finals if f.t <= gen.started_t]
        return final_turn[id(before[-1])] if before else None
    # Started on a partial: the turn being spoken then (its speech began before the request).
    best = None
    for index, start in enumerate(clock_starts):
        if start <= gen.started_t:
            best = index
    return best


@dataclass(frozen=True)
class Summary:
    """p50/p95 over turns, with the per-turn rows; latencies in seconds (None: no value at all)."""

    turns: list[TurnFigures]

    def values(self, name: str) -> list[float]:
        out = []
        for fig in self.turns:
            value = getattr(fig, name)
            if value is not None and math.isfinite(value):
                out.append(float(value))
        return out

    def pct(self, name: str, q: float) -> float | None:
        from kame_cli.stats import percentile

        values = self.values(name)
        return percentile(values, q) if values else None

    def mean(self, name: str) -> float | None:
        values = self.values(name)
        return sum(values) / len(values) if values else None

    def figures(self) -> dict[str, object]:
        informed_p50 = self.pct("informed_s", 50)
        cascaded_p50 = self.pct("cascaded_s", 50)
        ratio = informed_p50 / cascaded_p50 if informed_p50 is not None and cascaded_p50 else None
        out: dict[str, object] = {
            "questions_n": len(self.turns),
            "informed_oracle_p50_s": informed_p50,
            "informed_oracle_p95_s": self.pct("informed_s", 95),
            "any_oracle_p50_s": self.pct("any_s", 50),
            "any_oracle_p95_s": self.pct("any_s", 95),
            "cascaded_p50_s": cascaded_p50,
            "cascaded_p95_s": self.pct("cascaded_s", 95),
            "eos_to_final_p50_s": self.pct("eos_to_final_s", 50),
            "cascade_ttft_p50_s": self.pct("cascade_ttft_s", 50),
            "heard_p50_s": self.pct("heard_s", 50),
            "informed_request_p50_s": self.pct("informed_request_s", 50),
            "informed_first_chunk_p50_s": self.pct("informed_first_chunk_s", 50),
            "ratio_p50": ratio,
            "share_after_informed_mean": self.mean("share_after_informed"),
            "restarts_per_question": self.mean("restarts") if self.turns else None,
            "wasted_tokens_per_question": self.mean("wasted_tokens") if self.turns else None,
            "informed_reached": len(self.values("informed_s")),
        }
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}
