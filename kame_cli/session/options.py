"""What `kame talk` was asked, as one frozen tree: `TalkOptions(frontend, input, output, echo, ...)`.

The CLI declares the flags once (`commands.talk`) and fills this tree in one call; `validate()`
holds every check between flags (one line, exit 2, before anything loads); the specs then travel
down whole: `build` puts `input`, `output` and `echo` into the front-end process's setup, and the
front-end hands `echo` to `audio_io.aec_wiring`. None in a field keeps the profile's value.

    TalkOptions
    ├── frontend: FrontendSpec   --model --device --half --quantize --seed (over the profile's [frontend])
    ├── input: InputSpec         --input --fast --input-device          (no file: the microphone)
    ├── output: OutputSpec       --output --output-stereo --output-device --no-speaker
    ├── echo: EchoSpec           --aec --headphones --echo-reference    (over the profile's [audio])
    └── profile, log_dir, no_ui, no_llm, realtime, debug_step_delay_ms, backends

Public names: `TalkOptions`, `FrontendSpec`, `InputSpec`, `OutputSpec`, `EchoSpec` (from
`audio_io.aec_wiring`, re-exported here). `kame serve` builds its sessions from the same specs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kame_cli.audio_io.aec_wiring import EchoSpec
from kame_cli.errors import ConfigError

if TYPE_CHECKING:
    from kame_cli.engine.config import FrontendConfig


@dataclass(frozen=True)
class FrontendSpec:
    """The command line's overrides of the profile's `[frontend]`."""

    model: str | None = None
    device: str | None = None
    half: bool = False
    """True forces fp16; False keeps the profile's."""
    quantize: str | None = None
    """`int8` or `none` over the profile's `quantize`."""
    seed: int | None = None

    def apply(self, cfg: FrontendConfig) -> FrontendConfig:
        """`cfg` with these overrides, each checked as the profile's key is (a bad `--device` is one
        line naming the flag)."""
        from kame_cli.settings import override

        overrides: dict[str, Any] = {}
        if self.model is not None:
            overrides["model"] = self.model
        if self.device is not None:
            overrides["device"] = self.device
        if self.half:
            overrides["half"] = True
        if self.quantize is not None:
            overrides["quantize"] = self.quantize
        if self.seed is not None:
            overrides["seed"] = self.seed
        return override(cfg, overrides)


@dataclass(frozen=True)
class InputSpec:
    """Where the user's voice comes from: a WAV file, else the microphone."""

    file: Path | None = None
    fast: bool = False
    """With a file: as fast as the front-end steps, not in real time (lossless)."""
    device: str | None = None
    """The microphone: an index or a name; None: the system's default."""


@dataclass(frozen=True)
class OutputSpec:
    """Where the assistant's voice goes: a WAV file, the speaker, or both."""

    file: Path | None = None
    stereo: bool = False
    """The file holds the user (left) and the assistant (right)."""
    device: str | None = None
    """The speaker: an index or a name (naming one plays even with a file input)."""
    speaker: bool = True
    """False: `--no-speaker`. In the front-end's setup: whether a speaker plays (`TalkOptions.plays`)."""


@dataclass(frozen=True)
class TalkOptions:
    """What `kame talk` was asked; `validate()` before use."""

    profile: str | None = None
    frontend: FrontendSpec = field(default_factory=FrontendSpec)
    input: InputSpec = field(default_factory=InputSpec)
    output: OutputSpec = field(default_factory=OutputSpec)
    echo: EchoSpec = field(default_factory=EchoSpec)
    log_dir: Path | None = None
    no_ui: bool = False
    no_llm: bool = False
    realtime: bool = False
    """Ask for a real-time scheduling policy for the front-end process (one line if refused)."""
    debug_step_delay_ms: float = 0.0
    """Debug: sleep this long in every front-end step, as a too slow device would (lag bound tests)."""
    backends: bool = True
    """False: the front-end alone, no STT and no oracle (`kame bench isolation`'s baseline)."""

    def validate(self) -> None:
        """Every check between flags (and of a flag's value) that needs no file: a ConfigError's one
        line that names the flag and the fix."""
        from kame_cli.engine.config import quantize_flag

        quantize_flag(self.frontend.quantize)
        if self.input.fast and self.input.file is None:
            raise ConfigError("--fast needs --input FILE: a microphone can only be read in real time")
        if self.output.stereo and self.output.file is None:
            raise ConfigError("--output-stereo needs --output FILE: it sets that file's channel layout")
        if self.debug_step_delay_ms < 0:
            raise ConfigError("--debug-step-delay-ms must be >= 0")
        if self.profile is not None and not self.profile.strip():
            raise ConfigError(
                "--profile is empty: give a profile name or a TOML path (see kame profiles list)"
            )
        if self.echo.reference is not None and self.input.file is None:
            raise ConfigError(
                "--echo-reference replays a recording: it needs --input FILE (the recorded microphone)"
            )
        self.echo.check()  # --aec's value, --headphones with --aec on

    @property
    def plays(self) -> bool:
        """The assistant's voice goes to a speaker: a microphone session unless `--no-speaker`, or a
        named `--output-device`."""
        return (self.input.file is None and self.output.speaker) or self.output.device is not None


__all__ = ["EchoSpec", "FrontendSpec", "InputSpec", "OutputSpec", "TalkOptions"]
