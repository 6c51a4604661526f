"""What kame's processes say to each other: small typed messages, pickled over a socket.

Besides these, the links carry the existing typed events (`kame_cli.events`) and oracle commands
unchanged. The supervisor (the CLI's process) is the hub: the front-end and the back-end never
talk to each other directly, so a back-end can die and be replaced without the front-end noticing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kame_cli.audio_io.aec_wiring import EchoSpec
from kame_cli.audio_io.config import AudioConfig
from kame_cli.backends.oracle.config import LlmConfig, PolicyConfig, PromptConfig
from kame_cli.backends.stt.config import SttConfig
from kame_cli.backends.tools.config import ToolServerConfig
from kame_cli.engine.config import FrontendConfig
from kame_cli.errors import KameError
from kame_cli.knowledge.config import KnowledgeConfig
from kame_cli.session.options import InputSpec, OutputSpec


@dataclass(frozen=True, slots=True)
class FrontendSetup:
    """Everything the front-end process needs to build its part of the session."""

    frontend: FrontendConfig
    clock_origin: float
    input: InputSpec
    output: OutputSpec
    """`speaker` resolved: whether a speaker plays (`TalkOptions.plays`)."""
    echo: EchoSpec
    """The command line's echo settings, resolved against `audio` in the front-end process."""
    input_wav_fd: int | None
    """The log's input.wav, created by the supervisor (`session.files`) and passed to the child."""
    output_wav_fd: int | None
    max_lag_ms: float | None
    """None: lossless (`--fast`)."""
    step_delay_ms: float
    realtime: bool
    frames_to_backend: bool
    frame_queue: int
    """Frames for the STT the link may hold before it drops (0: unbounded, lossless)."""
    audio: AudioConfig = field(default_factory=AudioConfig)
    """The profile's `[audio]` table (echo cancellation settings)."""


@dataclass(frozen=True, slots=True)
class BackendSetup:
    """Everything the back-end process needs: the STT, and the oracle unless `llm` is None."""

    stt: SttConfig
    llm: LlmConfig | None
    policy: PolicyConfig
    prompt: PromptConfig
    clock_origin: float
    realtime: bool
    attempt: int
    knowledge: KnowledgeConfig | None = None
    """[knowledge] The profile's documents (None: none named): indexed before the oracle starts."""
    tools: tuple[ToolServerConfig, ...] = ()
    """The profile's `[[tools]]`: MCP servers the oracle's LLM may call."""


@dataclass(frozen=True, slots=True)
class Ready:
    """A child has loaded its models and warmed up; `info` describes what it runs."""

    role: str
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Go:
    """Start: the back-end gets the front-end's tokenizer and the LLM's api_base with it."""

    tokenizer_proto: bytes | None = None
    api_base: str | None = None


@dataclass(frozen=True, slots=True)
class Running:
    """The back-end's STT and oracle are running."""


@dataclass(frozen=True, slots=True)
class UserFrame:
    """One 80 ms frame of the user's (filtered) voice for the STT: float32 samples at 24 kHz."""

    index: int
    pcm: bytes
    revision: bytes = b""
    """Float32 samples that replace the STT's last ones up to this frame's end (the user's onset, as
    the echo canceller would have let it through had it known they talked); empty: none."""


@dataclass(frozen=True, slots=True)
class EndOfInput:
    """The input ended after `frames` frames (end of file): the STT closes the user's last turn."""

    frames: int


@dataclass(frozen=True, slots=True)
class FrontendDone:
    """The front-end stepped every frame of a file that ended."""

    steps: int


@dataclass(frozen=True, slots=True)
class SttFlushed:
    """The STT transcribed everything before `EndOfInput` and published its last final."""


@dataclass(frozen=True, slots=True)
class Stop:
    """End now: stop the parts, close the files, answer `Closed`, exit."""


@dataclass(frozen=True, slots=True)
class Failure:
    """A part failed: `message` is the one line for the user, `exit_code` 2 (bad input) or 1."""

    message: str
    exit_code: int

    @classmethod
    def of(cls, err: BaseException, what: str) -> Failure:
        """A `KameError`'s own line and exit code; anything else (a torch error, a broken install)
        as "`what` (Type: first line)", exit 1, rather than a traceback."""
        if isinstance(err, KameError):
            return cls(str(err), err.exit_code)
        return cls(f"{what} ({type(err).__name__}: {one_line(err)})", 1)


def one_line(err: BaseException) -> str:
    """The first line of an error's message (its type's name when it has none)."""
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


@dataclass(frozen=True, slots=True)
class Notice:
    """One line for the user's terminal that is not an error (a refused `--realtime`)."""

    message: str


@dataclass(frozen=True, slots=True)
class Closed:
    """A child stopped its parts and closed its files; what failed while closing, and its counts."""

    failures: tuple[Failure, ...] = ()
    stats: dict[str, int] = field(default_factory=dict)
