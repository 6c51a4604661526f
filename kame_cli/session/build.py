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
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TextIO

from kame_cli.bus import EventBus
from kame_cli.clock import SessionClock
from kame_cli.priority import LLM_SERVER_NICENESS, deprioritize_process_tree
from kame_cli.session.runtime import Session, SessionPlan
from kame_cli.session.wire import BackendSetup, FrontendSetup
from kame_cli.ui.live import SessionView

if TYPE_CHECKING:
    from kame_cli.engine.config import FrontendConfig
    from kame_cli.profiles import Profile
    from kame_cli.session.options import TalkOptions


def build_session(
    opts: TalkOptions, stack: contextlib.ExitStack, out: TextIO, stop: threading.Event
) -> tuple[Session, SessionView] | None:
    """Everything `kame talk` runs, in the order that finds a user's mistake before a long load.

    Returns None if `stop` was set (a signal) while the models loaded; whatever was started by then
    is stopped by `stack`.
    """
    from kame_cli.profiles import check_environment, load_profile

    opts.validate()
    profile = load_profile(opts.profile)
    frontend_cfg = frontend_config(profile, opts)
    use_llm = not opts.no_llm and opts.backends
    if use_llm:
        check_environment(profile)  # a missing API key variable: one line, before anything loads
    _check_files(opts)

    clock = SessionClock()
    bus = EventBus()
    wav_fds = _open_log(opts, bus, stack)
    plan = _plan(opts, profile, frontend_cfg, clock, wav_fds, use_llm)
    from kame_cli.session.template import session_launcher

    # Closed after the session's stop: a forked child's exit comes from its template.
    session = Session(plan, bus, clock, launch=stack.enter_context(session_launcher()))
    stack.callback(session.stop)
    pieces = _Pieces()
    view = SessionView(
        bus,
        out,
        piece=pieces,
        start_token_id=None,
        live=not opts.no_ui and out.isatty() and os.environ.get("TERM") != "dumb",
        title=f"kame · {profile.name} · {frontend_cfg.model}",
    )
    if not _load(session, opts, profile, frontend_cfg, stack, stop, use_llm):
        return None
    info = session.frontend_info
    pieces.table = info.get("pieces", [])
    view.state.start_token_id = info.get("start_id")
    view.title = f"kame · {profile.name} · {frontend_cfg.model} on {info.get('device', '?')}"
    return session, view


def _open_log(opts: TalkOptions, bus: EventBus, stack: contextlib.ExitStack) -> tuple[int | None, int | None]:
    """With `--log-dir`: the log's writer, started, and its two WAV files' descriptors for the front-end."""
    if opts.log_dir is None:
        return None, None
    from kame_cli.session.files import INPUT_WAV, OUTPUT_WAV, open_session_wav
    from kame_cli.session.log import SessionLog

    log = SessionLog(bus, opts.log_dir)
    fds = open_session_wav(log.directory, INPUT_WAV), open_session_wav(log.directory, OUTPUT_WAV)
    log.start()
    stack.callback(_close_log, log)
    return fds


def _plan(
    opts: TalkOptions,
    profile: Profile,
    frontend_cfg: FrontendConfig,
    clock: SessionClock,
    wav_fds: tuple[int | None, int | None],
    use_llm: bool,
) -> SessionPlan:
    """The two children's setups: the specs travel whole, the profile's tables beside them."""
    realtime_pace = not opts.input.fast
    frontend = FrontendSetup(
        frontend=frontend_cfg,
        clock_origin=clock.origin,
        input=opts.input,
        output=replace(opts.output, speaker=opts.plays),
        echo=opts.echo,
        input_wav_fd=wav_fds[0],
        output_wav_fd=wav_fds[1],
        max_lag_ms=frontend_cfg.max_lag_ms if realtime_pace else None,
        step_delay_ms=opts.debug_step_delay_ms,
        realtime=opts.realtime,
        frames_to_backend=opts.backends,
        frame_queue=25 if realtime_pace else 0,
        audio=profile.audio,
    )
    backend = BackendSetup(
        stt=profile.stt,
        llm=profile.llm if use_llm else None,
        policy=profile.policy,
        prompt=profile.prompt,
        clock_origin=clock.origin,
        realtime=realtime_pace,
        attempt=1,
        knowledge=profile.knowledge if use_llm and profile.knowledge.documents else None,
        tools=profile.tools,
    )
    pass_fds = tuple(fd for fd in wav_fds if fd is not None)
    return SessionPlan(frontend, backend if opts.backends else None, pass_fds)


def _load(
    session: Session,
    opts: TalkOptions,
    profile: Profile,
    frontend_cfg: FrontendConfig,
    stack: contextlib.ExitStack,
    stop: threading.Event,
    use_llm: bool,
) -> bool:
    """Start the children and (with an LLM) the profile's local server; False if stopped meanwhile."""
    from rich.console import Console

    what = "front-end" + (" and speech recognizer" if opts.backends else "")
    with Console(file=sys.stderr).status(f"Loading {what} ({frontend_cfg.model}, {profile.stt.model})…"):
        session.launch()
        if use_llm:
            from kame_cli.profiles import prepare_llm_backend

            try:
                session.api_base = stack.enter_context(prepare_llm_backend(profile))
            except InterruptedError:  # Ctrl-C while its Q8_0 copy was made or the server loaded
                return False
            server_pid = _llm_server_pid()
            if server_pid is not None:
                deprioritize_process_tree(server_pid, LLM_SERVER_NICENESS, idle=opts.realtime)
        return session.wait_ready(stop) and not stop.is_set()  # a stop during loading: never "started"


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
    if opts.input.file is not None:
        from kame_cli.audio_io.aec_wiring import input_channel
        from kame_cli.audio_io.files import FileSource

        # The whole check the front-end's source makes (header, length, NaN scan, channel), here,
        # so that a broken file costs no process start.
        channel = input_channel(opts.input.file, opts.echo)
        FileSource(opts.input.file, paced=False, channel=channel).stop()
    if opts.output.file is not None:
        from kame_cli.audio_io.wav import check_output_path

        check_output_path(opts.output.file)


def _close_log(log: Any) -> None:
    log.close()
    if log.error is not None:
        raise log.error


def frontend_config(profile: Profile, opts: TalkOptions) -> FrontendConfig:
    """The profile's `[frontend]` with the command line's overrides."""
    return opts.frontend.apply(profile.frontend)
