"""Builds a `kame talk` session from options: checks cheap things first, then loads the models."""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TextIO

from kame_cli.bus import EventBus
from kame_cli.clock import SessionClock
from kame_cli.session.runtime import Session, SessionParts
from kame_cli.ui.live import SessionView

if TYPE_CHECKING:
    from kame_cli.profiles.profile import Profile
    from kame_cli.session.talk import TalkOptions


class OutputFanout:
    """The front-end's output callback: hands each frame to every sink (all non-blocking)."""

    def __init__(self) -> None:
        self.sinks: list[Any] = []

    def __call__(self, step: int, pcm: Any) -> None:
        for sink in self.sinks:
            sink.write(step, pcm)


def build_session(opts: TalkOptions, stack: contextlib.ExitStack, out: TextIO) -> tuple[Session, SessionView]:
    """Everything `kame talk` runs, in the order that finds a user's mistake before a long load."""
    from rich.console import Console

    from kame_cli.profiles.profile import load_profile
    from kame_cli.profiles.runtime import check_environment
    from kame_cli.session.talk import resolve_compute_device

    profile = load_profile(opts.profile)
    frontend_cfg = _frontend_config(profile, opts)
    if not opts.no_llm:
        problem = check_environment(profile)
        if problem:
            from kame_cli.errors import ConfigError

            raise ConfigError(problem)
    source, input_sinks, output_sinks = _audio_parts(opts, stack)
    device = resolve_compute_device(frontend_cfg.device, frontend_cfg.model)
    frontend_cfg = replace(frontend_cfg, device=device)  # type: ignore[arg-type]

    console = Console(file=sys.stderr)
    clock = SessionClock()
    bus = EventBus()
    with console.status(f"Loading front-end {frontend_cfg.model} on {device}…"):
        from kame_cli.engine.loader import Sampling, load_frontend
        from kame_cli.engine.loop import FrontendLoop

        frontend = load_frontend(frontend_cfg)
    stt = None
    with console.status(f"Loading speech recognizer ({profile.stt.model})…"):
        from kame_cli.backends.stt.model import load_stt_model
        from kame_cli.backends.stt.worker import SttWorker

        stt = SttWorker(profile.stt, bus, clock, model=load_stt_model(profile.stt))

    if opts.log_dir is not None:
        from kame_cli.audio_io import WavSink
        from kame_cli.session.log import SessionLog, prepare_log_dir

        log_dir = prepare_log_dir(opts.log_dir)
        input_sinks.append(WavSink(log_dir / "input.wav", private=True))
        output_sinks.append(WavSink(log_dir / "output.wav", private=True))
        log = SessionLog(bus, log_dir)
        log.start()
        stack.callback(log.close)

    fanout = OutputFanout()
    fanout.sinks.extend(output_sinks)
    loop = FrontendLoop(
        frontend,
        bus,
        clock,
        on_output=fanout,
        seed=frontend_cfg.seed,
        sampling=Sampling.from_config(frontend_cfg),
    )
    oracle = None
    if not opts.no_llm:
        from kame_cli.backends.oracle.producer import OracleProducer
        from kame_cli.profiles.runtime import prepare_llm_backend

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
        output_sinks=output_sinks,
        input_sinks=input_sinks,
        stt=stt,
        oracle=oracle,
        fast=opts.fast,
    )
    session = Session(parts, bus, clock)
    stack.callback(session.stop)
    from kame_cli.session.talk import make_piece_lookup

    live = not opts.no_ui and out.isatty() and os.environ.get("TERM") != "dumb"
    view = SessionView(
        bus,
        out,
        piece=make_piece_lookup(frontend.text_tokenizer),
        start_token_id=frontend.text_start_id,
        live=live,
        title=f"kame · {profile.name} · {frontend_cfg.model}",
    )
    return session, view


def _frontend_config(profile: Profile, opts: TalkOptions) -> Any:
    cfg = profile.frontend
    overrides: dict[str, Any] = {}
    if opts.model is not None:
        overrides["model"] = opts.model
    if opts.device is not None:
        overrides["device"] = opts.device
    if opts.half:
        overrides["half"] = True
    if opts.seed is not None:
        overrides["seed"] = opts.seed
    return replace(cfg, **overrides)


def _audio_parts(opts: TalkOptions, stack: contextlib.ExitStack) -> tuple[Any, list[Any], list[Any]]:
    """Source and sinks; opening them first reports a bad file or device before any model loads."""
    from kame_cli.audio_io import FileSource, MicrophoneSource, SpeakerSink, WavSink

    input_sinks: list[Any] = []
    output_sinks: list[Any] = []
    if opts.input_file is not None:
        source: Any = FileSource(opts.input_file, paced=not opts.fast)
    else:
        source = MicrophoneSource(opts.input_device)
    if opts.output_file is not None:
        wav = WavSink(opts.output_file, stereo=opts.output_stereo)
        output_sinks.append(wav)
        if opts.output_stereo:
            input_sinks.append(_UserChannel(wav))
    play = opts.input_file is None and not opts.no_speaker
    if play or opts.output_device is not None:
        output_sinks.append(SpeakerSink(opts.output_device))
    return source, input_sinks, output_sinks


class _UserChannel:
    """Routes the user's frames to the left channel of a stereo `WavSink` (which the session closes)."""

    def __init__(self, wav: Any) -> None:
        self._wav = wav

    def start(self) -> None:
        return None

    def write(self, step: int, pcm: Any) -> None:
        self._wav.write_user(step, pcm)

    def close(self) -> None:
        return None
