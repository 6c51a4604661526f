"""`kame talk --server URL`: a session on a `kame serve` elsewhere, heard and played here.

The microphone (or `--input` WAV at real-time pace) goes out as Ogg/Opus; the voice comes back and
plays on the speaker (and/or goes to `--output`). With the speaker and microphone both live, the
echo canceller runs here, as in a local session, fed what this machine plays. The server's session
events arrive as metadata (the client asks with `?kame=1`) and feed the same panel and, with
`--log-dir`, the same session log as `kame talk` writes (plus this side's input.wav/output.wav).

Exit codes as `kame talk`: 0 at the end of the input or on Ctrl-C/SIGTERM; 1 when the connection
is lost or refused at run time (one line; files complete); 2 for bad input (a URL, a file, a token).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from kame_cli.bus import EventBus
from kame_cli.clock import FRAME_SAMPLES, SessionClock
from kame_cli.errors import EXIT_OK, ConfigError, RuntimeFailure
from kame_cli.events import BackendStatus, Event
from kame_cli.serve import metadata, protocol

if TYPE_CHECKING:
    import aiohttp

TOKEN_ENV = "KAME_SERVER_TOKEN"
_CONNECT_TIMEOUT_S = 30.0
_TAIL_TIMEOUT_S = 10.0
_UI_PERIOD_S = 0.1


@dataclass(frozen=True)
class RemoteTalk:
    """What `kame talk --server` was asked (the options that apply to a remote session)."""

    server: str
    input_file: Path | None = None
    output_file: Path | None = None
    log_dir: Path | None = None
    no_ui: bool = False
    input_device: str | None = None
    output_device: str | None = None
    no_speaker: bool = False
    aec: str | None = None
    headphones: bool = False


def chat_url(server: str) -> str:
    """The WebSocket URL of `server` (ws/wss/http/https, `/api/chat` by default) with `kame=1` added."""
    parts = urlsplit(server.strip())
    scheme = {"ws": "ws", "http": "ws", "wss": "wss", "https": "wss"}.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        raise ConfigError(
            f"--server {shown_url(server)!r}: give a URL such as ws://host:8998 or wss://host:8998 "
            "(kame serve prints it)"
        )
    path = parts.path if parts.path not in ("", "/") else "/api/chat"
    query = "&".join(q for q in (parts.query, "kame=1") if q)
    return urlunsplit((scheme, parts.netloc, path, query, ""))


def shown_url(server: str) -> str:
    """`server` without its query and user info, for output and the panel's title."""
    parts = urlsplit(server.strip())
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def run_remote_talk(opts: RemoteTalk) -> int:
    """Run one remote session to its end; returns the exit code (or raises a one-line KameError)."""
    return asyncio.run(RemoteSession(opts).run())


class RemoteSession:
    """One connection to a `kame serve`, from the first byte to complete files."""

    def __init__(self, opts: RemoteTalk) -> None:
        self.opts = opts
        self.url = chat_url(opts.server)
        self.shown = shown_url(opts.server)
        """The server as this client names it in its output: no query (a `?token=` stays unsaid)."""
        self.clock = SessionClock()
        self.bus = EventBus()
        self._local = _OnServerClock(self.bus)
        self.frames_sent = 0
        self.frames_played = 0
        self._stack = contextlib.ExitStack()
        self._stop = asyncio.Event()
        self._input_done = asyncio.Event()
        self._all_played = asyncio.Event()
        """After the input's end: the voice's answer to its last frame has come (full-length output)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._outputs: list[Any] = []
        self._recorders: list[Any] = []
        self._source: Any = None
        self._echo: Any = None
        self._writer: Any = None
        self._reader: Any = None
        self._pending: np.ndarray = np.zeros(0, dtype=np.float32)
        self._lost: str | None = None
        self._pieces: tuple[str, ...] = ()
        self._view: Any = None

    # --- setup --------------------------------------------------------------------------------------

    def _check(self) -> None:
        """Everything the user may have got wrong, before a byte goes out."""
        o = self.opts
        if o.input_file is not None:
            from kame_cli.audio_io.files import FileSource

            FileSource(o.input_file, paced=False).stop()
        if o.output_file is not None:
            from kame_cli.audio_io.wav import check_output_path

            check_output_path(o.output_file)
        if o.log_dir is not None:
            from kame_cli.session.files import prepare_log_dir

            prepare_log_dir(o.log_dir)

    def _open_files(self) -> None:
        from kame_cli.audio_io import WavSink

        o = self.opts
        if o.log_dir is not None:
            from kame_cli.session.files import INPUT_WAV, OUTPUT_WAV, open_session_file
            from kame_cli.session.log import SessionLog

            log = SessionLog(self.bus, o.log_dir)
            recorder = WavSink(INPUT_WAV, private=True, fd=open_session_file(log.directory, INPUT_WAV))
            self._recorders.append(recorder)
            self._outputs.append(
                WavSink(OUTPUT_WAV, private=True, fd=open_session_file(log.directory, OUTPUT_WAV))
            )
            log.start()
            self._stack.callback(_close_log, log)
        if o.output_file is not None:
            self._outputs.append(WavSink(o.output_file))

    def _audio_parts(self) -> None:
        from kame_cli.audio_io import FileSource, MicrophoneSource, SpeakerSink

        o = self.opts
        if o.input_file is not None:
            self._source = FileSource(o.input_file, paced=True, clock=self.clock)
        else:
            self._source = MicrophoneSource(o.input_device, clock=self.clock, events=self._local)
        speaker = None
        if (o.input_file is None and not o.no_speaker) or o.output_device is not None:
            speaker = SpeakerSink(o.output_device, clock=self.clock, events=self._local)
            self._outputs.append(speaker)
        from kame_cli.audio_io.aec_wiring import EchoSpec, build_microphone_echo
        from kame_cli.audio_io.config import AudioConfig

        echo = EchoSpec(aec=o.aec, headphones=o.headphones)
        echo.check()
        self._echo = build_microphone_echo(
            AudioConfig(), echo, source=self._source, speaker=speaker, events=self._local, clock=self.clock
        )

    # --- run ----------------------------------------------------------------------------------------

    async def run(self) -> int:
        import sphn

        from kame_cli.ui.live import SessionView

        self._check()
        self._loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._loop.add_signal_handler(sig, self._stop.set)
        self._writer = sphn.OpusStreamWriter(24_000)
        self._reader = sphn.OpusStreamReader(24_000)
        live = not self.opts.no_ui and sys.stdout.isatty() and os.environ.get("TERM") != "dumb"
        view = self._view = SessionView(
            self.bus,
            sys.stdout,
            piece=self._piece,
            start_token_id=None,
            live=live,
            title=f"kame · {self.shown}",
        )
        with self._stack:
            self._open_files()
            self._audio_parts()
            with view:
                painter = asyncio.create_task(_paint(view))
                try:
                    await self._converse()
                finally:
                    painter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await painter
                    self._close_audio()
        if self._lost is not None:
            raise RuntimeFailure(self._lost)
        return EXIT_OK

    async def _converse(self) -> None:
        import aiohttp

        headers = {}
        token = os.environ.get(TOKEN_ENV)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=_CONNECT_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            try:
                ws = await http.ws_connect(self.url, headers=headers, max_msg_size=1 << 20)
            except aiohttp.WSServerHandshakeError as err:
                raise _refusal(err) from None
            except aiohttp.ClientConnectorCertificateError as err:
                raise RuntimeFailure(
                    f"{self.shown}: the server's TLS certificate is not trusted ({_reason(err)}): "
                    "trust it explicitly with SSL_CERT_FILE=cert.pem (kame serve prints its path and "
                    "fingerprint)"
                ) from None
            except (aiohttp.ClientError, OSError) as err:
                raise RuntimeFailure(f"cannot connect to {self.shown} ({_reason(err)})") from None
            self._ws = ws
            async with ws:
                if not await self._wait_handshake(ws):
                    return
                self._start_input()
                receiving = asyncio.create_task(self._receive(ws))
                ending = asyncio.create_task(self._until_done())
                done, _ = await asyncio.wait({receiving, ending}, return_when=asyncio.FIRST_COMPLETED)
                ending.cancel()
                if ending in done and ending.exception() is not None:
                    raise typing.cast(BaseException, ending.exception())
                if receiving not in done:
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await ws.close()
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait_for(receiving, 2.0)
                elif not self._stop.is_set() and not self._finished():
                    code = ws.close_code
                    self._lost = self._lost or (
                        f"the connection to {self.shown} was lost (close code {code}); the files hold "
                        "everything up to then"
                    )

    async def _wait_handshake(self, ws: aiohttp.ClientWebSocketResponse) -> bool:
        import aiohttp

        while not self._stop.is_set():
            receive = asyncio.ensure_future(ws.receive())
            stop = asyncio.ensure_future(self._stop.wait())
            done, _ = await asyncio.wait({receive, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if receive not in done:
                receive.cancel()
                return False
            message = receive.result()
            if message.type != aiohttp.WSMsgType.BINARY:
                self._lost = (
                    f"{self.shown} closed the connection before the session started ({ws.close_code})"
                )
                return False
            decoded = protocol.decode(message.data)
            if isinstance(decoded, protocol.Handshake):
                return True
            if isinstance(decoded, protocol.Metadata):
                info = metadata.from_json(decoded.data)
                if isinstance(info, metadata.QueuePlace):
                    self.bus.publish(
                        BackendStatus(
                            self.clock.now(),
                            "session",
                            "degraded",
                            f"waiting for the server: place {info.place}",
                        )
                    )
            elif isinstance(decoded, protocol.Error):
                self._lost = f"{self.shown}: {decoded.message}"
                return False
        return False

    def _piece(self, token_id: int) -> str:
        pieces = self._pieces
        return pieces[token_id] if 0 <= token_id < len(pieces) else ""

    def _start_input(self) -> None:
        for sink in (*self._outputs, *self._recorders):
            sink.start()
        self._source.start(self._on_input_frame)

    def _on_input_frame(self, pcm: np.ndarray) -> None:
        # On the source's thread: the canceller, the recorder, the encoder; the send on the loop.
        heard = pcm if self._echo is None else self._echo(pcm)
        index = self.frames_sent
        self.frames_sent += 1
        for recorder in self._recorders:
            recorder.write(index, pcm)  # the microphone as it was, as a local session's log keeps it
        ogg = self._writer.append_pcm(np.asarray(heard, dtype=np.float32))
        loop = self._loop
        if ogg and loop is not None:
            loop.call_soon_threadsafe(self._send, protocol.encode(protocol.Audio(ogg)))

    def _send(self, data: bytes) -> None:
        ws = self._ws
        if ws is not None and not ws.closed:
            task = asyncio.ensure_future(ws.send_bytes(data))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        import aiohttp

        async for message in ws:
            if message.type != aiohttp.WSMsgType.BINARY:
                continue
            try:
                decoded = protocol.decode(message.data)
            except protocol.ProtocolError:
                continue  # as moshi's protocol says: discard what is not known
            if isinstance(decoded, protocol.Audio):
                self._play(self._reader.append_bytes(decoded.ogg))
            elif isinstance(decoded, protocol.Metadata):
                info = metadata.from_json(decoded.data)
                if isinstance(info, metadata.SessionTime):
                    # This side's events (audio xruns, the canceller) are moved onto the server's
                    # clock as they are logged; the clock itself never jumps: the canceller aligns
                    # the speaker's and the microphone's blocks by its readings.
                    self._local.offset = info.t - self.clock.now()
                elif isinstance(info, metadata.TokenPieces):
                    self._pieces = info.pieces
                    if self._view is not None:
                        self._view.state.start_token_id = info.start_id
                elif info is not None and not isinstance(info, metadata.OutputMark | metadata.QueuePlace):
                    self.bus.publish(info)
            elif isinstance(decoded, protocol.Error):
                self._lost = f"{self.shown}: {decoded.message}"

    def _play(self, pcm: np.ndarray) -> None:
        pending = np.concatenate((self._pending, np.asarray(pcm, dtype=np.float32)))
        while pending.size >= FRAME_SAMPLES:
            frame, pending = pending[:FRAME_SAMPLES], pending[FRAME_SAMPLES:]
            if self._file_answered():
                break  # a file's answer is as long as the file, as in a local session
            for sink in self._outputs:
                sink.write(self.frames_played, frame)
            self.frames_played += 1
        self._pending = pending
        if self._finished():
            self._all_played.set()

    def _file_answered(self) -> bool:
        if self.opts.input_file is None:
            return False  # a microphone's answer has no end
        # The file's frame count is known from its header: the cap holds before its feeder thread has
        # ended too (the server steps on silence when a frame comes late, so its voice can run a frame
        # ahead). A file that failed part-way is answered once its last frame sent is.
        source = self._source
        if source.wait(0) and source.error is not None:
            return self.frames_played >= self.frames_sent
        return self.frames_played >= source.frame_count

    def _finished(self) -> bool:
        return self._input_done.is_set() and self.frames_played >= self.frames_sent

    async def _until_done(self) -> None:
        """Until a stop signal, or the file's end and then the voice's answer to its last frame."""
        source = self._source
        while not self._stop.is_set():
            if self.opts.input_file is not None and source.wait(0):
                if source.error is not None:
                    raise ConfigError(str(source.error))
                self._input_done.set()
                if not self._finished():
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._all_played.wait(), _TAIL_TIMEOUT_S)
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), _UI_PERIOD_S)

    def _close_audio(self) -> None:
        if self._source is not None:
            self._source.stop()
        for sink in (*self._outputs, *self._recorders):
            sink.close()


class _OnServerClock:
    """The event sink of this side's audio parts: their events go to the bus with their time moved
    onto the server's session clock (`offset`, known once the session's time has come)."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self.offset = 0.0

    def publish(self, event: Event) -> None:
        offset = self.offset
        self._bus.publish(dataclasses.replace(event, t=event.t + offset) if offset else event)


async def _paint(view: Any) -> None:
    while True:
        await asyncio.sleep(_UI_PERIOD_S)
        view.refresh()


def _close_log(log: Any) -> None:
    log.close()
    if log.error is not None:
        raise log.error


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _refusal(err: aiohttp.WSServerHandshakeError) -> Exception:
    if err.status == 401:
        return ConfigError(
            f"the server wants an access token: set {TOKEN_ENV} to the token it was started with"
        )
    if err.status == 403:
        return ConfigError("the server refused this client's Origin (see kame serve --allow-origin)")
    if err.status == 503:
        after = err.headers.get("Retry-After", "a few") if err.headers is not None else "a few"
        return RuntimeFailure(f"the server is busy (its queue is full): try again in {after} s")
    return RuntimeFailure(f"the server refused the session (HTTP {err.status}: {err.message})")


_LOCAL_ONLY = ("profile", "model", "device", "half", "quantize", "fast", "output_stereo", "seed", "realtime")


def talk_remote(server: str, **talk_options: Any) -> int:
    """`kame talk --server URL` with `kame talk`'s options: those that choose the tandem are the
    server's (`kame serve` takes them), so giving one here is a mistake said in one line."""
    given = [name for name in _LOCAL_ONLY if talk_options.get(name) not in (None, False)]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise ConfigError(f"{flag} does not apply with --server: the server chose it (see kame serve --help)")
    if talk_options.get("echo_reference") is not None:
        raise ConfigError(
            "--echo-reference does not apply with --server: replay a log locally with kame talk"
        )
    if talk_options.get("no_llm"):
        raise ConfigError("--no-llm does not apply with --server: the server runs the oracle")
    return run_remote_talk(
        RemoteTalk(
            server=server,
            input_file=talk_options.get("input_file"),
            output_file=talk_options.get("output_file"),
            log_dir=talk_options.get("log_dir"),
            no_ui=bool(talk_options.get("no_ui")),
            input_device=talk_options.get("input_device"),
            output_device=talk_options.get("output_device"),
            no_speaker=bool(talk_options.get("no_speaker")),
            aec=talk_options.get("aec"),
            headphones=bool(talk_options.get("headphones")),
        )
    )
