"""Typed, immutable events that cross threads, and the commands sent to the front-end.

Every event carries `t`, seconds on the session's `SessionClock`; events tied to audio also carry
the front-end step (one step = one 80 ms frame) or the audio time they describe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# --- front-end (engine) -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FrontendText:
    """A text piece the front-end emitted on its inner-monologue stream (what it is saying)."""

    t: float
    step: int
    text: str


@dataclass(frozen=True, slots=True)
class StepTiming:
    """Time spent on one front-end step, against the 80 ms frame budget."""

    t: float
    step: int
    encode_ms: float
    lm_ms: float
    decode_ms: float
    total_ms: float
    lag_ms: float = 0.0
    """How far behind the user the loop was at this step: frames waiting x 80 ms."""


@dataclass(frozen=True, slots=True)
class DeadlineMiss:
    """A step whose processing took longer than the frame budget."""

    t: float
    step: int
    total_ms: float
    budget_ms: float


@dataclass(frozen=True, slots=True)
class OracleFed:
    """An oracle token other than padding that the front-end consumed at `step`."""

    t: float
    step: int
    token_id: int
    pending: int
    """Tokens still waiting in the oracle stream after this step."""


# --- commands to the front-end's oracle stream (sent by the oracle producer) ---------------------


@dataclass(frozen=True, slots=True)
class OracleReset:
    """Start a new oracle: the stream restarts with the text start token at the next step."""

    generation: int


@dataclass(frozen=True, slots=True)
class OracleAppend:
    """Append token ids (the front-end tokenizer's encoding of one stripped LLM chunk)."""

    generation: int
    token_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class OracleClear:
    """Withdraw the not-yet-consumed rest of oracle `generation` (its stream failed): padding from
    the next step on, with no start token, as if no oracle had been given since."""

    generation: int


OracleCommand = OracleReset | OracleAppend | OracleClear

# --- streaming STT ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartialTranscript:
    """The user's current turn so far: committed words only grow; tentative ones may change."""

    t: float
    committed: str
    tentative: str
    audio_end: float
    """Seconds of user audio (from the session start) that this hypothesis covers."""
    audio_start: float = 0.0
    """Where the turn's speech began (seconds of user audio): the same for every partial of a turn."""
    pause: bool = False
    """Made when the whole-turn decode at the speaker's pause has committed the turn's last words
    (one per pause, even when it added none): the user has stopped, and unless they go on this is
    the text of the turn's final, due `end_silence_ms` later."""

    @property
    def text(self) -> str:
        return " ".join(part for part in (self.committed, self.tentative) if part)


@dataclass(frozen=True, slots=True)
class FinalTranscript:
    """The user's whole turn, closed by end-of-speech silence (or the end of the input)."""

    t: float
    text: str
    audio_start: float
    audio_end: float
    partial_text: str = ""
    """What the turn's last partial showed (committed and tentative words) when this final replaced it."""
    revised: bool = False
    """The final does not begin with the words the partials committed: whoever acted on them should
    start over from `text`."""


# --- oracle producer (LLM back-end) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OracleRequestStarted:
    """An LLM stream started for the user text so far (`reason`: first, words, pause, final)."""

    t: float
    generation: int
    reason: str
    user_text: str


@dataclass(frozen=True, slots=True)
class OracleChunk:
    """A chunk of the running LLM answer, as written into the oracle stream."""

    t: float
    generation: int
    text: str
    token_ids: tuple[int, ...]
    first: bool
    """True for the chunk that reset the stream."""
    latency_ms: float
    """Time from the request's start to this chunk (the time to first token when `first`)."""


@dataclass(frozen=True, slots=True)
class OracleFinished:
    """An LLM stream ended: `completed`, `cancelled` (a restart superseded it), or `failed`."""

    t: float
    generation: int
    outcome: Literal["completed", "cancelled", "failed"]
    text: str


# --- health of every part -----------------------------------------------------------------------

Component = Literal["frontend", "stt", "llm", "audio", "session", "backend", "tools"]


@dataclass(frozen=True, slots=True)
class BackendStatus:
    """A part's health changed: `ok`, `degraded` (working around a fault) or `error`."""

    t: float
    component: Component
    state: Literal["ok", "degraded", "error"]
    message: str


@dataclass(frozen=True, slots=True)
class AudioXrun:
    """The sound card lost data: an input overflow or an output underrun (silence played)."""

    t: float
    kind: Literal["input_overflow", "output_underrun"]
    total: int


# --- appended: the process layout and the live lag bound ----------------------------------------


@dataclass(frozen=True, slots=True)
class FramesDropped:
    """The front-end fell more than `[frontend] max_lag_ms` behind a live input: it dropped the
    oldest `count` frames (never in `--fast` file mode, which is lossless)."""

    t: float
    step: int
    count: int
    total: int
    lag_ms: float
    """The lag before the drop."""


ProcessRole = Literal["frontend", "backend"]


@dataclass(frozen=True, slots=True)
class ProcessStarted:
    """A kame process of the session started (`attempt` 2 is the back-end's one restart)."""

    t: float
    role: ProcessRole
    pid: int
    attempt: int


@dataclass(frozen=True, slots=True)
class ProcessEnded:
    """A kame process of the session ended; `expected` is False when it died on its own."""

    t: float
    role: ProcessRole
    pid: int
    exit_code: int | None
    """The process's exit status; negative: the signal that killed it."""
    expected: bool
    reason: str


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """The session's counts at its end (published just before the final `stopped` status)."""

    t: float
    steps: int
    deadline_misses: int
    dropped_frames: int
    """Input frames the lag bound dropped."""
    stt_dropped_frames: int
    stt_decodes_skipped: int
    backend_restarts: int


# --- echo cancellation (the microphone path) -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class AecStatus:
    """The echo canceller's figures, about once a second while it runs (`kame_cli.audio_io.aec`)."""

    t: float
    erle_db: float | None
    """Echo return loss enhancement while the assistant speaks; None before it has spoken."""
    delay_ms: float | None
    """The devices' echo delay from the stream timestamps (output + input latency); None if unknown."""
    residual_ms: float | None
    """How far the far end fed to AEC3 leads the microphone after timestamp alignment."""
    cpu_ms_per_frame: float


# --- tool calls of the oracle's LLM (MCP servers, `kame_cli.backends.tools`) ----------------------


@dataclass(frozen=True, slots=True)
class ToolCallStarted:
    """The LLM answering oracle `generation` asked for a tool; it runs while the voice goes on."""

    t: float
    generation: int
    call_id: str
    server: str
    name: str
    arguments: str
    """The arguments' JSON as the LLM wrote it, cut to 300 characters."""


ToolOutcome = Literal["ok", "error", "timeout", "unavailable", "cancelled"]


@dataclass(frozen=True, slots=True)
class ToolCallFinished:
    """A tool call ended: `ok`, `error` (the tool or the server failed), `timeout`, `unavailable`
    (no such allowed tool running) or `cancelled` (a restart superseded its oracle: nothing of it
    was used)."""

    t: float
    generation: int
    call_id: str
    server: str
    name: str
    outcome: ToolOutcome
    duration_ms: float
    result_chars: int
    """The result's size before it was cut to the server's `max_result_chars`."""
    truncated: bool
    message: str
    """Why it failed (empty when `ok`)."""


# --- the session's bounds in its log (written by the log writer, not published on the bus) -------


@dataclass(frozen=True, slots=True)
class SessionStarted:
    """The session's parts were ready and its input began to flow: the user is heard from `t` on."""

    t: float


@dataclass(frozen=True, slots=True)
class SessionStopped:
    """The session stopped; `reason` is what its final status said."""

    t: float
    reason: str


# --- the user's documents (kame_cli.knowledge) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Retrieval:
    """Passages of the user's documents retrieved for oracle request `generation` from the user's words."""

    t: float
    generation: int
    duration_ms: float
    """From the request's start to its prompt being ready: what retrieval added before the LLM call."""
    outcome: Literal["ok", "timeout", "failed"]
    """`timeout`: `[knowledge] timeout_ms` ran out (the request took what was found by then);
    `failed`: the index or the embedding model failed (the request went out without notes)."""
    chars: int
    """Characters of reference notes the request carries (bounded by `max_prompt_chars`)."""
    query: str
    """The user's words the passages were looked up with."""
    sources: tuple[str, ...]
    """Where each passage in the request is from (`handbook.md > Returns`), best first."""


Event = (
    FrontendText
    | StepTiming
    | DeadlineMiss
    | OracleFed
    | PartialTranscript
    | FinalTranscript
    | OracleRequestStarted
    | OracleChunk
    | OracleFinished
    | BackendStatus
    | AudioXrun
    | FramesDropped
    | ProcessStarted
    | ProcessEnded
    | SessionSummary
    | AecStatus
    | SessionStarted
    | SessionStopped
    | Retrieval
    | ToolCallStarted
    | ToolCallFinished
)
