"""Builds a `kame talk` session from options: cheap checks first, then the processes and their loads.

This process (the supervisor) never imports torch, faster-whisper or LiteLLM: the front-end and
back-end processes load them, in parallel, while this one starts the local LLM server if the
profile has one.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import TYPE_CHECKING, Any, TextIO

from kame_cli.bus import EventBus
from kame_cli.clock import SessionClock
from kame_cli.errors import ConfigError
from kame_cli.priority import LLM_SERVER_NICENESS, deprioritize_process_tree
from kame_cli.session.runtime import Session, SessionPlan
from kame_cli.session.wire import BackendSetup, FrontendSetup
from kame_cli.ui.live import SessionView

if TYPE_CHECKING:
    from kame_cli.engine.config import FrontendConfig
    from kame_cli.profiles import Profile
    from kame_cli.session.talk import TalkOptions


def build_session(
    opts: TalkOptions, stack: contextlib.ExitStack, out: TextIO, stop: threading.Event
) -> tuple[Session, SessionView] | None:
    """Everything `kame talk` runs, in the order that finds a user's mistake before a long load.

    Returns None if `stop` was set (a signal) while the models loaded; whatever was started by then
    is stopped by `stack`.
    """
    from rich.console import Console

    from kame_cli.profiles import check_environment, load_profile

    if opts.fast and opts.input_file is None:
        raise ConfigError("--fast needs --input FILE: a microphone can only be read in real time")
    if opts.output_stereo and opts.output_file is None:
        raise ConfigError("--output-stereo needs --output FILE: it sets that file's channel layout")
    if opts.debug_step_delay_ms < 0:
        raise ConfigError("--debug-step-delay-ms must be >= 0")
    if opts.profile is not None and not opts.profile.strip():
        raise ConfigError("--profile is empty: give a profile name or a TOML path (see kame profiles list)")
    if opts.echo_reference is not None and opts.input_file is None:
        raise ConfigError(
            "--echo-reference replays a recording: it needs --input FILE (the recorded microphone)"
        )
    profile = load_profile(opts.profile)
    frontend_cfg = frontend_config(profile, opts)
    from kame_cli.audio_io.aec_wiring import aec_mode  # a contradictory --aec: before anything opens

    aec = aec_mode(profile.audio, aec=opts.aec, headphones=opts.headphones)
    use_llm = not opts.no_llm and opts.backends
    if use_llm:
        check_environment(profile)  # a missing API key variable: one line, before anything loads
    _check_files(opts)

    clock = SessionClock()
    bus = EventBus()
    log = None
    pass_fds: tuple[int, ...] = ()
    wav_fds: list[int | None] = [None, None]
    if opts.log_dir is not None:
        from kame_cli.session.files import INPUT_WAV, OUTPUT_WAV, open_session_wav
        from kame_cli.session.log import SessionLog

        log = SessionLog(bus, opts.log_dir)
        wav_fds = [open_session_wav(log.directory, INPUT_WAV), open_session_wav(log.directory, OUTPUT_WAV)]
        pass_fds = tuple(fd for fd in wav_fds if fd is not None)
        log.start()
        stack.callback(_close_log, log)

    realtime_pace = not opts.fast
    plan = SessionPlan(
        frontend=FrontendSetup(
            frontend=frontend_cfg,
            clock_origin=clock.origin,
            input_file=None if opts.input_file is None else str(opts.input_file),
            fast=opts.fast,
            input_device=opts.input_device,
            output_file=None if opts.output_file is None else str(opts.output_file),
            output_stereo=opts.output_stereo,
            output_device=opts.output_device,
            speaker=opts.input_file is None and not opts.no_speaker,
            input_wav_fd=wav_fds[0],
            output_wav_fd=wav_fds[1],
            max_lag_ms=frontend_cfg.max_lag_ms if realtime_pace else None,
            step_delay_ms=opts.debug_step_delay_ms,
            realtime=opts.realtime,
            frames_to_backend=opts.backends,
            frame_queue=25 if realtime_pace else 0,
            audio=profile.audio,
            aec=aec,
            echo_reference=None if opts.echo_reference is None else str(opts.echo_reference),
        ),
        backend=BackendSetup(
            stt=profile.stt,
            llm=profile.llm if use_llm else None,
            policy=profile.policy,
            prompt=profile.prompt,
            clock_origin=clock.origin,
            realtime=realtime_pace,
            attempt=1,
            idle_priority=opts.realtime,
        )
        if opts.backends
        else None,
        pass_fds=pass_fds,
    )
    session = Session(plan, bus, clock)
    stack.callback(session.stop)
    live = not opts.no_ui and out.isatty() and os.environ.get("TERM") != "dumb"
    pieces = _Pieces()
    view = SessionView(
        bus,
        out,
        piece=pieces,
        start_token_id=None,
        live=live,
        title=f"kame · {profile.name} · {frontend_cfg.model}",
    )
    console = Console(file=sys.stderr)
    what = "front-end" + (" and speech recognizer" if opts.backends else "")
    with console.status(f"Loading {what} ({frontend_cfg.model}, {profile.stt.model})…"):
        session.launch()
        if use_llm:
            from kame_cli.profiles import prepare_llm_backend

            try:
                session.api_base = stack.enter_context(prepare_llm_backend(profile))
            except InterruptedError:  # Ctrl-C while its Q8_0 copy was made or the server loaded
                return None
            server_pid = _llm_server_pid()
            if server_pid is not None:
                deprioritize_process_tree(server_pid, LLM_SERVER_NICENESS, idle=opts.realtime)
        if not session.wait_ready(stop) or stop.is_set():  # a stop during loading: never "started"
            return None
    info = session.frontend_info
    pieces.table = info.get("pieces", [])
    view.state.start_token_id = info.get("start_id")
    view.title = f"kame · {profile.name} · {frontend_cfg.model} on {info.get('device', '?')}"
    return session, view


class _Pieces:
    """A token's text for the panel, from the table the front-end sent once it had loaded."""

    def __init__(self) -> None:
        self.table: list[str] = []

    def __call__(self, token_id: int) -> str:
        return self.table[token_id] if 0 <= token_id < len(self.table) else ""


def _llm_server_pid() -> int | None:
    """The local llama.cpp server's pid (a child of this process), to put it below everything else."""
    import psutil

    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if "kame_cli.backends.oracle.llama_child" in " ".join(child.cmdline()):
                return child.pid
    return None


def _check_files(opts: TalkOptions) -> None:
    """A bad --input or --output is reported before anything loads (the front-end opens them again)."""
    if opts.input_file is not None:
        from kame_cli.audio_io.aec_wiring import input_channel
        from kame_cli.audio_io.files import FileSource

        # The whole check the front-end's source makes (header, length, NaN scan, channel), here,
        # so that a broken file costs no process start.
        channel = input_channel(opts.input_file, opts.echo_reference)
        FileSource(opts.input_file, paced=False, channel=channel).stop()
    if opts.output_file is not None:
        from kame_cli.audio_io.wav import check_output_path

        check_output_path(opts.output_file)


def _close_log(log: Any) -> None:
    log.close()
    if log.error is not None:
        raise log.error


def frontend_config(profile: Profile, opts: TalkOptions) -> FrontendConfig:
    """The profile's `[frontend]` with the command line's overrides."""
    overrides: dict[str, Any] = {}
    if opts.model is not None:
        overrides["model"] = opts.model
    if opts.device is not None:
        overrides["device"] = opts.device
    if opts.half:
        overrides["half"] = True
    if opts.quantize is not None:
        overrides["quantize"] = opts.quantize
    if opts.seed is not None:
        overrides["seed"] = opts.seed
    from kame_cli.settings import override

    return override(profile.frontend, overrides)
