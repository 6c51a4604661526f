"""Builds a `kame talk` session from options: cheap checks first, then the slow model loads."""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TextIO

from kame_cli.bus import EventBus
from kame_cli.clock import SessionClock
from kame_cli.errors import ConfigError, DeviceError
from kame_cli.session.runtime import Session, SessionParts
from kame_cli.ui.live import SessionView

if TYPE_CHECKING:
    from kame_cli.engine.config import FrontendConfig
    from kame_cli.profiles import Profile
    from kame_cli.session.talk import TalkOptions

_STT_FLUSH_S = 10.0


def build_session(opts: TalkOptions, stack: contextlib.ExitStack, out: TextIO) -> tuple[Session, SessionView]:
    """Everything `kame talk` runs, in the order that finds a user's mistake before a long load."""
    from rich.console import Console

    from kame_cli.profiles import check_environment, load_profile

    if opts.fast and opts.input_file is None:
        raise ConfigError("--fast needs --input FILE: a microphone can only be read in real time")
    if opts.output_stereo and opts.output_file is None:
        raise ConfigError("--output-stereo needs --output FILE: it sets that file's channel layout")
    if opts.echo_reference is not None and opts.input_file is None:  # [aec]
        raise ConfigError(
            "--echo-reference replays a recording: it needs --input FILE (the recorded microphone)"
        )
    profile = load_profile(opts.profile)
    frontend_cfg = frontend_config(profile, opts)
    from kame_cli.audio_io.aec_wiring import aec_mode  # [aec] a contradictory --aec: before anything opens

    aec = aec_mode(profile.audio, aec=opts.aec, headphones=opts.headphones)
    if not opts.no_llm:
        check_environment(profile)  # a missing API key variable: one line, before anything loads
    clock = SessionClock()
    bus = EventBus()
    source, output_sinks, recorders = _audio_parts(opts, bus, clock)
    echo = _microphone_echo(opts, profile, aec, source, output_sinks, bus, clock)  # [aec]
    frontend_cfg = replace(frontend_cfg, device=compute_device(frontend_cfg))

    console = Console(file=sys.stderr)
    with console.status(f"Loading front-end {frontend_cfg.model} on {frontend_cfg.device}…"):
        from kame_cli.engine.loader import Sampling, load_frontend
        from kame_cli.engine.loop import FrontendLoop

        frontend = load_frontend(frontend_cfg)
    with console.status(f"Loading speech recognizer ({profile.stt.model})…"):
        from kame_cli.backends.stt.model import load_stt_model
        from kame_cli.backends.stt.worker import SttWorker

        stt = SttWorker(profile.stt, bus, clock, model=load_stt_model(profile.stt), realtime=not opts.fast)

    if opts.log_dir is not None:
        from kame_cli.audio_io import WavSink
        from kame_cli.session.log import SessionLog

        log = SessionLog(bus, opts.log_dir)
        recorders.append(WavSink(log.directory / "input.wav", private=True))
        output_sinks.append(WavSink(log.directory / "output.wav", private=True))
        log.start()
        stack.callback(log.close)

    from kame_cli.audio_io import TeeSink

    output = TeeSink(*output_sinks)
    loop = FrontendLoop(
        frontend,
        bus,
        clock,
        on_output=output.write,
        seed=frontend_cfg.seed,
        sampling=Sampling.from_config(frontend_cfg),
    )
    oracle = None
    if not opts.no_llm:
        from kame_cli.backends.oracle.producer import OracleProducer
        from kame_cli.profiles import prepare_llm_backend

        with console.status(f"Starting LLM back-end ({profile.llm.model})…"):
            api_base = stack.enter_context(prepare_llm_backend(profile))
        tokenizer = frontend.text_tokenizer
        oracle = OracleProducer(
            profile.llm,
            profile.policy,
            profile.prompt,
            tokenize=lambda text: list(tokenizer.encode(text)),
            send=loop.send_oracle,
            events=bus,
            clock=clock,
            api_base=api_base,
        )
    parts = SessionParts(
        frontend_loop=loop,
        source=source,
        output=output,
        recorders=recorders,
        stt=stt,
        oracle=oracle,
        fast=opts.fast,
        echo=echo,
    )
    session = Session(parts, bus, clock)
    stack.callback(session.stop)

    live = not opts.no_ui and out.isatty() and os.environ.get("TERM") != "dumb"
    view = SessionView(
        bus,
        out,
        piece=lambda token_id: frontend.text_piece(token_id) or "",
        start_token_id=frontend.text_start_id,
        live=live,
        title=f"kame · {profile.name} · {frontend_cfg.model} on {frontend_cfg.device}",
    )
    return session, view


def frontend_config(profile: Profile, opts: TalkOptions) -> FrontendConfig:
    """The profile's `[frontend]` with the command line's overrides."""
    overrides: dict[str, Any] = {}
    if opts.model is not None:
        overrides["model"] = opts.model
    if opts.device is not None:
        overrides["device"] = opts.device
    if opts.half:
        overrides["half"] = True
    if opts.seed is not None:
        overrides["seed"] = opts.seed
    return replace(profile.frontend, **overrides)


def compute_device(cfg: FrontendConfig) -> str:
    """`auto` means the GPU; without one, only small local models may fall back to the CPU."""
    from kame_cli.engine.checkpoint import looks_like_path
    from kame_cli.engine.loader import resolve_device

    device = resolve_device(cfg.device).type
    if (
        cfg.device == "auto"
        and device == "cpu"
        and not (cfg.model == "random:tiny" or looks_like_path(cfg.model))
    ):
        raise DeviceError(
            f"no CUDA GPU found for front-end {cfg.model!r}: use --device cpu to force the CPU (far slower "
            "than real time for a 7B model), or --model random:tiny for an offline demo"
        )
    return device


def _audio_parts(opts: TalkOptions, bus: EventBus, clock: SessionClock) -> tuple[Any, list[Any], list[Any]]:
    """Source and sinks; opening them first reports a bad file or device before any model loads."""
    from kame_cli.audio_io import FileSource, MicrophoneSource, SpeakerSink, WavSink

    output_sinks: list[Any] = []
    recorders: list[Any] = []
    if opts.input_file is not None:
        from kame_cli.audio_io.aec_wiring import input_channel  # [aec] a stereo recording: user left

        channel = input_channel(opts.input_file, opts.echo_reference)
        source: Any = FileSource(opts.input_file, paced=not opts.fast, clock=clock, channel=channel)
    else:
        source = MicrophoneSource(opts.input_device, clock=clock, events=bus)
    if opts.output_file is not None:
        wav = WavSink(opts.output_file, stereo=opts.output_stereo)
        output_sinks.append(wav)
        if opts.output_stereo:
            recorders.append(_UserChannel(wav))
    if (opts.input_file is None and not opts.no_speaker) or opts.output_device is not None:
        output_sinks.append(SpeakerSink(opts.output_device, clock=clock, events=bus))
    return source, output_sinks, recorders


def _microphone_echo(
    opts: TalkOptions,
    profile: Profile,
    mode: str,
    source: Any,
    sinks: list[Any],
    bus: EventBus,
    clock: SessionClock,
) -> Any:
    """[aec] The echo canceller for the microphone path (None when it does not run)."""
    from kame_cli.audio_io import SpeakerSink
    from kame_cli.audio_io.aec_wiring import build_microphone_echo

    speaker = next((s for s in sinks if isinstance(s, SpeakerSink)), None)
    return build_microphone_echo(
        profile.audio,
        mode,
        source=source,
        speaker=speaker,
        echo_reference=opts.echo_reference,
        events=bus,
        clock=clock,
    )


class _UserChannel:
    """Records the user's frames in the left channel of a stereo `WavSink` (closed as an output)."""

    def __init__(self, wav: Any) -> None:
        self._wav = wav

    def start(self) -> None:
        return None

    def write(self, step: int, pcm: Any) -> None:
        self._wav.write_user(step, pcm)

    def close(self) -> None:
        return None
