"""The session timeline: one figure, one clock (seconds since the input started), six panels.

Panels, top to bottom: the user's and the assistant's audio with the VAD turns and the key instants
of each turn; the STT's partial and final transcripts; each oracle request as a bar (start, chunks,
end by outcome); the oracle tokens fed to the front-end per step; the front-end's words; and the
step time against the 80 ms budget.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kame_cli.clock import FRAME_SECONDS
from kame_cli.errors import printable
from kame_cli.events import (
    DeadlineMiss,
    FinalTranscript,
    FrontendText,
    PartialTranscript,
    StepTiming,
    ToolCallFinished,
)
from kame_cli.tandem.oracle_trace import Generation, trace_generations

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from kame_cli.session.record import SessionRecord
    from kame_cli.tandem.measures import TurnFigures

PANELS = (
    "audio: you (blue) and the assistant (orange)",
    "speech recognition: words heard",
    "oracle requests (LLM): bar from request to end, ▶ first chunk, | chunks; green completed, grey "
    "cancelled, red failed; thick edge: informed; orange ◆ line: a tool call; purple ◆: documents "
    "retrieved (hollow: none found)",
    "oracle tokens fed to the front-end",
    "front-end words (what the voice says)",
    "front-end step time",
)
BUDGET_MS = 80.0
_TOOL_COLOR = "#ef6c00"
_OUTCOME_COLORS = {"completed": "#2e7d32", "cancelled": "#9e9e9e", "failed": "#c62828", "running": "#1565c0"}
_INCHES_PER_S = 0.42
_CHARS_PER_INCH = 15.0  # 7-point text
_MIN_WIDTH, _MAX_WIDTH = 12.0, 40.0


def draw_session(
    log_dir: Path,
    target: Path,
    *,
    title: str | None = None,
    figures: Sequence[TurnFigures] | None = None,
    dpi: int = 110,
    what: str | None = None,
) -> Figure:
    """Read the log in `log_dir`, draw its timeline to `target` (.png or .svg); returns the figure.
    `what` names the target in errors (default: its path)."""
    import io
    import warnings

    from kame_cli.session.files import write_user_file
    from kame_cli.session.record import read_session
    from kame_cli.tandem.cascade import read_cascades
    from kame_cli.tandem.measures import measure_turns, turns_from_segments, vad_segments

    record = read_session(log_dir)
    if figures is None:
        audio, rate = record.input_audio()
        turns = turns_from_segments(vad_segments(audio, rate))
        figures = measure_turns(record, turns, read_cascades(log_dir))
    import matplotlib

    image = io.BytesIO()
    # The texts are the log's (what was heard and said): a "$" in them is a dollar, not mathtext.
    with matplotlib.rc_context({"text.parse_math": False}), warnings.catch_warnings():
        # A glyph the font lacks (CJK, a control character in the log) is drawn as a box, not a warning.
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig = build_figure(record, figures, title=title or printable(f"kame session · {log_dir}"))
        fig.savefig(image, dpi=dpi, format=target.suffix.lower().lstrip(".") or "png")
    write_user_file(target, image.getvalue(), what or str(target))
    return fig


def build_figure(record: SessionRecord, figures: Sequence[TurnFigures], *, title: str) -> Figure:
    """The timeline figure (matplotlib's object API: no pyplot, no global state)."""
    from matplotlib.figure import Figure

    t0 = record.origin
    duration = max(record.end_t - t0, 1.0)
    width = min(max(duration * _INCHES_PER_S + 2.5, _MIN_WIDTH), _MAX_WIDTH)
    generations, _ = trace_generations(record.events)
    lanes = max(_lanes(sorted(generations.values(), key=lambda g: g.number), record.end_t), default=0) + 1
    oracle_height = max(1.2, 0.42 * lanes)
    fig = Figure(figsize=(width, 10.5 + oracle_height), layout="constrained")
    axes = fig.subplots(
        len(PANELS), 1, sharex=True, gridspec_kw={"height_ratios": [1.3, 1.3, oracle_height, 0.8, 1.0, 1.0]}
    )
    fig.suptitle(title, fontsize=12, x=0.01, ha="left")
    _audio_panel(axes[0], record, figures)
    _transcript_panel(axes[1], record)
    _oracle_panel(axes[2], record, generations, figures)
    _fed_panel(axes[3], record, generations)
    _words_panel(axes[4], record, width)
    _steps_panel(axes[5], record)
    for ax, name in zip(axes, PANELS, strict=True):
        ax.set_title(name, loc="left", fontsize=10, fontweight="bold")
        ax.grid(axis="x", alpha=0.25)
        for f in figures:
            ax.axvline(f.eos_t - t0, color="#6a1b9a", lw=0.9, ls="--", alpha=0.6)
    axes[-1].set_xlabel("seconds since the input started (one session clock)")
    axes[0].set_xlim(-0.2, duration + 0.2)
    return fig


# --- panels -------------------------------------------------------------------------------------


def _audio_panel(ax: Axes, record: SessionRecord, figures: Sequence[TurnFigures]) -> None:
    audio, rate = record.input_audio()
    _envelope(ax, audio, rate, 1.0, "#1565c0")
    output = record.output_audio()
    if output is not None:
        # The assistant's frame k is heard once step k is done: drawn at that step's time, so a
        # front-end that falls behind shows it.
        times = [s.t - record.origin for s in record.steps]
        _envelope(ax, output[0], output[1], -1.0, "#ef6c00", frame_times=times)
    ax.axhline(0, color="#bdbdbd", lw=0.5)
    t0 = record.origin
    for f in figures:
        ax.axvspan(f.speech_start, f.speech_end, color="#bbdefb", alpha=0.45, lw=0)
        marks = []
        if f.final_t is not None:
            marks.append(("final", f.final_t, "#37474f"))
        if f.informed_s is not None:
            marks.append(("(a) informed oracle fed", f.eos_t + f.informed_s, "#2e7d32"))
        if f.cascaded_s is not None:
            marks.append(("(c) cascade's first token", f.eos_t + f.cascaded_s, "#c62828"))
        for k, (label, t, color) in enumerate(marks):
            y = 0.9 - 0.28 * k
            ax.plot([t - t0], [y], marker="v", color=color, ms=6)
            _note(ax, label, (t - t0, y), (4, -3), fontsize=7, color=color)
        summary = [f"{f.label or f'turn {f.index}'}"]
        if f.informed_s is not None or f.cascaded_s is not None:
            summary.append(f"(a) {_sec(f.informed_s)}  (c) {_sec(f.cascaded_s)}")
        _note(
            ax,
            "\n".join(summary),
            (f.speech_start, -0.95),
            (0, 0),
            fontsize=7.5,
            color="#4a148c",
            va="bottom",
        )
    ax.set_ylim(-1.05, 1.05)
    ax.set_yticks([0.5, -0.5], ["you", "assistant"], fontsize=8)


def _envelope(
    ax: Axes, audio: Any, rate: int, sign: float, color: str, frame_times: Sequence[float] | None = None
) -> None:
    import numpy as np

    hop = max(1, rate // 200)  # 5 ms peaks: the shape of speech without 10^6 points
    n = len(audio) // hop
    if n == 0:
        return
    peaks = np.abs(audio[: n * hop]).reshape(n, hop).max(axis=1)
    peaks = peaks / max(float(peaks.max()), 1e-4) * 0.95
    times = (np.arange(n) + 0.5) * hop / rate
    if frame_times:
        per_frame = FRAME_SECONDS
        index = np.minimum((times / per_frame).astype(int), len(frame_times) - 1)
        ends = np.asarray(frame_times)[index]
        times = ends - per_frame + (times - index * per_frame)
    ax.fill_between(times, 0, sign * peaks, color=color, lw=0, alpha=0.55)


def _sec(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _note(ax: Axes, text: str, xy: tuple[float, float], offset: tuple[float, float], **style: Any) -> None:
    """A label that never pushes the panels apart (kept out of the layout, clipped to its panel)."""
    artist = ax.annotate(text, xy, xytext=offset, textcoords="offset points", annotation_clip=True, **style)
    artist.set_in_layout(False)
    artist.set_clip_on(True)


def _transcript_panel(ax: Axes, record: SessionRecord) -> None:
    t0 = record.origin
    times: list[float] = []
    committed: list[int] = []
    heard: list[int] = []
    for event in record.events:
        if isinstance(event, PartialTranscript):
            times.append(event.t - t0)
            committed.append(len(event.committed.split()))
            heard.append(len(event.text.split()))
        elif isinstance(event, FinalTranscript):
            times.append(event.t - t0)
            committed.append(0)
            heard.append(0)
    ax.step(times, heard, where="post", color="#90a4ae", lw=1, label="committed + tentative")
    ax.step(times, committed, where="post", color="#263238", lw=1.5, label="committed")
    last_label_t = -1e9
    for event in record.events:
        if isinstance(event, PartialTranscript) and event.t - t0 - last_label_t > 0.6:
            newest = event.tentative or " ".join(event.committed.split()[-2:])
            _note(ax, newest, (event.t - t0, len(event.text.split())), (2, 2), fontsize=6.5, color="#607d8b")
            last_label_t = event.t - t0
        elif isinstance(event, FinalTranscript) and event.text.strip():
            _note(
                ax,
                f"final: {_short(event.text, 48)}",
                (event.t - t0, 0),
                (3, 5),
                fontsize=7.5,
                fontweight="bold",
                color="#263238",
                bbox={"boxstyle": "round,pad=0.2", "fc": "#fffde7", "ec": "#bdbdbd"},
            )
    top = max(heard, default=1)
    ax.set_ylim(-0.5, top * 1.35 + 1)
    ax.set_ylabel("words", fontsize=8)
    ax.legend(loc="upper right", fontsize=7, frameon=False)


def _lanes(generations: Sequence[Generation], end: float) -> list[int]:
    """A row for each generation so that no two bars (with their labels) overlap in time."""
    seconds_per_char = 1.0 / (_CHARS_PER_INCH * _INCHES_PER_S)
    lane_free: list[float] = []
    rows = []
    for gen in generations:
        stop = gen.end_t if gen.end_t is not None else end
        label = len(_request_label(gen)) * seconds_per_char
        answer = len(_answer_label(gen)) * seconds_per_char
        reach = max(gen.started_t + max(label, answer), stop) + 0.2
        row = next((i for i, free in enumerate(lane_free) if free <= gen.started_t), len(lane_free))
        if row == len(lane_free):
            lane_free.append(reach)
        else:
            lane_free[row] = reach
        rows.append(row)
    return rows


def _request_label(gen: Generation) -> str:
    return f"#{gen.number} {gen.reason}: “{_short(gen.user_text, 34)}”"


def _answer_label(gen: Generation) -> str:
    return f"{gen.outcome}: {_short(gen.text, 40) if gen.text else '(no answer)'}"


def _oracle_panel(
    ax: Axes, record: SessionRecord, generations: dict[int, Generation], figures: Sequence[TurnFigures]
) -> None:
    t0 = record.origin
    informed = {f.informed_generation for f in figures if f.informed_generation is not None}
    ordered = sorted(generations.values(), key=lambda g: g.number)
    end = record.end_t
    rows = _lanes(ordered, end)
    for row, gen in zip(rows, ordered, strict=True):
        y = -row
        stop = gen.end_t if gen.end_t is not None else end
        color = _OUTCOME_COLORS.get(gen.outcome, "#1565c0")
        knows = gen.number in informed
        ax.barh(
            y,
            stop - gen.started_t,
            left=gen.started_t - t0,
            height=0.36,
            color=color,
            alpha=0.3,
            edgecolor="#1b5e20" if knows else color,
            linewidth=2.0 if knows else 0.6,
        )
        if gen.chunks:
            ax.plot([c.t - t0 for c in gen.chunks], [y] * len(gen.chunks), "|", color=color, ms=7)
            ax.plot([gen.chunks[0].t - t0], [y], ">", color=color, ms=6)
        _note(ax, _request_label(gen), (gen.started_t - t0, y + 0.2), (0, 0), fontsize=7, color="#212121")
        answer = _answer_label(gen) + ("  (informed)" if knows else "")
        _note(ax, answer, (gen.started_t - t0, y - 0.2), (0, 0), fontsize=7, color=color, va="top")
    lanes = {gen.number: -row for row, gen in zip(rows, ordered, strict=True)}
    _tool_marks(ax, record, lanes)
    _retrieval_marks(ax, record, lanes)
    ax.set_ylim(-max(rows, default=0) - 0.7, 0.7)
    ax.set_yticks([])


def _tool_marks(ax: Axes, record: SessionRecord, lanes: dict[int, int]) -> None:
    """Each tool call on its request's lane: a diamond where it began, a line while it ran."""
    t0 = record.origin
    for call in record.of_type(ToolCallFinished):
        y = lanes.get(call.generation)
        if y is None:
            continue
        began = call.t - call.duration_ms / 1000.0 - t0
        ax.plot([began, call.t - t0], [y, y], color=_TOOL_COLOR, lw=2.5)
        ax.plot([began], [y], marker="D", color=_TOOL_COLOR, ms=5)
        label = f"{call.name} {call.outcome} {call.duration_ms:.0f} ms"
        _note(ax, label, (began, y), (0, 6), fontsize=6, color=_TOOL_COLOR)


def _retrieval_marks(ax: Axes, record: SessionRecord, lanes: dict[int, int]) -> None:
    """[knowledge] A diamond where each request's passages were ready, on that request's lane."""
    from kame_cli.events import Retrieval

    for ev in record.of_type(Retrieval):
        if ev.generation in lanes:
            found = "#6a1b9a" if ev.sources else "none"
            ax.plot([ev.t - record.origin], [lanes[ev.generation]], "D", ms=5, color="#6a1b9a", mfc=found)


def _fed_panel(ax: Axes, record: SessionRecord, generations: dict[int, Generation]) -> None:
    t0 = record.origin
    palette = _cycle()
    for gen in sorted(generations.values(), key=lambda g: g.number):
        color = palette[gen.number % len(palette)]
        if gen.start_fed is not None:
            ax.plot([gen.start_fed.t - t0], [1.1], marker="*", color=color, ms=9)
            _note(ax, f"#{gen.number} start", (gen.start_fed.t - t0, 1.1), (5, -3), fontsize=7, color=color)
        if gen.fed:
            ax.vlines([f.t - t0 for f in gen.fed], 0, 1, color=color, lw=1.2)
    ax.set_ylim(0, 1.5)
    ax.set_yticks([])
    ax.set_ylabel("a bar per\nanswer token", fontsize=7)


def _words_panel(ax: Axes, record: SessionRecord, width_in: float) -> None:
    t0 = record.origin
    pieces = record.of_type(FrontendText)
    ax.set_yticks([])
    ax.set_ylim(0, 1)
    if not pieces:
        return
    window = 2.0  # seconds of speech per text block
    chars = max(8, int(window * _INCHES_PER_S * _CHARS_PER_INCH * 0.9))
    start = pieces[0].t - t0
    block: list[str] = []
    block_start = start
    for piece in [*pieces, None]:
        t = piece.t - t0 if piece is not None else float("inf")
        if t - block_start >= window or piece is None:
            text = "".join(block).replace("\u2581", " ").strip()
            if text:
                wrapped = "\n".join(textwrap.wrap(text, chars)[:6])
                _note(ax, wrapped, (block_start, 0.95), (0, 0), fontsize=6.5, va="top", family="monospace")
            block, block_start = [], t
        if piece is not None:
            block.append(piece.text)


def _steps_panel(ax: Axes, record: SessionRecord) -> None:
    t0 = record.origin
    steps = record.of_type(StepTiming)
    misses = record.of_type(DeadlineMiss)
    ax.plot([s.t - t0 for s in steps], [s.total_ms for s in steps], color="#455a64", lw=0.7)
    ax.axhline(BUDGET_MS, color="#c62828", ls="--", lw=1)
    if misses:
        ax.plot([m.t - t0 for m in misses], [m.total_ms for m in misses], "o", color="#c62828", ms=3)
    ax.text(
        0.995,
        0.95,
        f"budget {BUDGET_MS:.0f} ms (dashed) · {len(misses)} misses (dots) in {len(steps)} steps",
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=8,
        color="#c62828",
    )
    top = max((s.total_ms for s in steps), default=BUDGET_MS)
    ax.set_ylim(0, max(top, BUDGET_MS) * 1.15)
    ax.set_ylabel("ms", fontsize=8)


def _short(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _cycle() -> list[str]:
    return ["#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#ad1457", "#5d4037", "#c62828"]
