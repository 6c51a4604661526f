"""One measured session: `kame talk` on a file in its own process, then its log measured per user
turn (`measures`) and the figures printed; what `kame bench tandem` and `kame replay` run per profile."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kame_cli.errors import ConfigError

if TYPE_CHECKING:
    from kame_cli.tandem.measures import SpeechTurn, TurnFigures
    from kame_cli.tandem.runner import MeasuredRun

RATIO_TARGET = 0.35
INFORMED_TARGET_S = 0.35


class SessionFailed(Exception):
    """A session child died before it wrote a log (the bench reports it in one line, exit 1)."""


def measure_run(
    profile: Any,
    wav: Path,
    log_dir: Path,
    spans: Sequence[tuple[float, float, str]] | None,
    *,
    model: str | None,
    say: Callable[[str], None],
    fast: bool = False,
    turns: Sequence[SpeechTurn] | None = None,
) -> dict[str, Any]:
    """Run one session and measure it: the figures, the per-question rows, the session's health."""
    from kame_cli.events import DeadlineMiss, StepTiming
    from kame_cli.session.record import read_session
    from kame_cli.tandem.measures import (
        Summary,
        measure_turns,
        turns_from_segments,
        turns_in_spans,
        vad_segments,
    )
    from kame_cli.tandem.runner import run_measured

    load_before = os.getloadavg()[0]
    run: MeasuredRun = run_measured(profile, wav, log_dir, model=model, fast=fast, progress=say)
    load_after = os.getloadavg()[0]
    if not (log_dir / "events.jsonl").is_file():
        message = run.message.removeprefix("kame: error: ")
        if run.exit_code == 2:  # the session refused its input: the user's to fix, said in one line
            raise ConfigError(message)
        raise SessionFailed(f"the session with profile {profile.name} failed: {message}")
    record = read_session(log_dir, paced=not fast)
    audio, rate = record.input_audio()
    if turns is None:
        segments = vad_segments(audio, rate, profile.stt.end_silence_ms)
        turns = turns_in_spans(segments, spans) if spans is not None else turns_from_segments(segments)
    figures = measure_turns(record, turns, run.cascades)
    summary = Summary(figures)
    result: dict[str, Any] = {"profile": profile.name, **summary.figures()}
    result.update(_request_figures(record))
    result["steps"] = len(record.of_type(StepTiming))
    result["deadline_misses"] = len(record.of_type(DeadlineMiss))
    result["load_1m_before"], result["load_1m_after"] = round(load_before, 2), round(load_after, 2)
    result["cpus"] = os.cpu_count()
    result["error"] = run.message
    result["log_dir"] = str(log_dir)
    result["questions"] = [f.row() for f in figures]
    report(result, figures, say, fast=fast)
    return result


def _request_figures(record: Any) -> dict[str, Any]:
    """The oracle's time to first token, for requests that superseded a running one and for the
    others: with one server slot, a restart also waits for the cancelled stream to let go."""
    from kame_cli.stats import percentile
    from kame_cli.tandem.oracle_trace import trace_generations

    generations, _ = trace_generations(record.events)
    restarted = [g.chunks[0].latency_ms for g in generations.values() if g.chunks and g.restart]
    fresh = [g.chunks[0].latency_ms for g in generations.values() if g.chunks and not g.restart]
    return {
        "oracle_requests": len(generations),
        "oracle_ttft_fresh_p50_ms": round(percentile(fresh, 50), 1) if fresh else None,
        "oracle_ttft_restart_p50_ms": round(percentile(restarted, 50), 1) if restarted else None,
        "oracle_ttft_n": [len(fresh), len(restarted)],
    }


def _s(value: float | None) -> str:
    return "   -  " if value is None else f"{value:6.2f}"


def _mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def report(
    result: dict[str, Any], figures: Sequence[TurnFigures], say: Callable[[str], None], *, fast: bool
) -> None:
    say("   q  (a) informed  (b) any  (c) cascade = final + ttft   (d) after  restarts  wasted  final")
    for f in figures:
        share = "  -  " if f.share_after_informed is None else f"{f.share_after_informed:4.0%}"
        split = f"{_s(f.eos_to_final_s)} + {_s(f.cascade_ttft_s)}"
        say(
            f"  {f.index:2d}  {_s(f.informed_s)} s     {_s(f.any_s)} s  {_s(f.cascaded_s)} s = {split}  "
            f"  {share}   {f.restarts:5d}  {f.wasted_tokens:6d}  {f.final_text[:40]!r}"
            + (f"  [{f.cascade_note}]" if f.cascade_note else "")
        )
    ratio = result["ratio_p50"]
    informed_p50 = result["informed_oracle_p50_s"]
    say(
        f"  p50: (a) {_s(informed_p50)} s  (b) {_s(result['any_oracle_p50_s'])} s  "
        f"(c) {_s(result['cascaded_p50_s'])} s   p95: (a) {_s(result['informed_oracle_p95_s'])} s  "
        f"(c) {_s(result['cascaded_p95_s'])} s"
    )
    say(
        f"  (a) step by step, p50 after the end of speech: the STT has the last words "
        f"{_s(result['heard_p50_s'])} s, the informed request starts "
        f"{_s(result['informed_request_p50_s'])} s, "
        f"its first chunk {_s(result['informed_first_chunk_p50_s'])} s, fed {_s(informed_p50)} s; cascade: "
        f"final {_s(result['eos_to_final_p50_s'])} s + first token {_s(result['cascade_ttft_p50_s'])} s"
    )
    ratio_text = "  -  " if ratio is None else f"{ratio:.2f}"
    say(
        f"  ratio (a)/(c) p50: {ratio_text} (target <= {RATIO_TARGET}: "
        f"{_mark(ratio is not None and ratio <= RATIO_TARGET)}); (a) p50 target <= {INFORMED_TARGET_S} s: "
        f"{_mark(informed_p50 is not None and informed_p50 <= INFORMED_TARGET_S)}"
    )
    say(
        f"  informed oracle reached {result['informed_reached']}/{result['questions_n']} questions; restarts "
        f"{result['restarts_per_question']} and wasted LLM tokens {result['wasted_tokens_per_question']} per "
        f"question; deadline misses {result['deadline_misses']}/{result['steps']} steps; load average "
        f"{result['load_1m_before']} -> {result['load_1m_after']} on {result['cpus']} CPUs"
    )
    say(
        f"  oracle time to first token p50: {result['oracle_ttft_fresh_p50_ms']} ms when none ran, "
        f"{result['oracle_ttft_restart_p50_ms']} ms on a restart (n = {result['oracle_ttft_n']})"
    )
    if fast:
        say("  --fast: the input ran ahead of real time, so these latencies are not a user's; texts are")
