"""One client's session in `kame serve`: its WebSocket, codecs, back-end, log and counts.

Runs on the server's event loop; the links' reader threads hand it messages through
`call_soon_threadsafe` or thread-safe calls (the event bus, the WAV writers, link sends). It owns
only sockets, codecs and files: the front-end host owns the model and the loop, the session's
back-end process its STT and conversation.

What goes to the client is queued in a bounded queue: a client that stops reading fills it and is
disconnected; the server's memory never grows for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kame_cli.bus import EventBus
from kame_cli.clock import FRAME_SAMPLES, FRAME_SECONDS, SessionClock
from kame_cli.events import (
    BackendStatus,
    DeadlineMiss,
    FinalTranscript,
    FrontendText,
    OracleAppend,
    OracleClear,
    OracleFinished,
    OracleRequestStarted,
    OracleReset,
    SessionSummary,
    StepTiming,
)
from kame_cli.serve import metadata, protocol
from kame_cli.serve.wire import (
    ClientFrame,
    EndSession,
    OutputFrame,
    SessionEnded,
    SessionEvent,
    SessionStarted,
    StartSession,
)
from kame_cli.session.wire import Failure, Go, Running, UserFrame, one_line

if TYPE_CHECKING:
    from aiohttp import web

    from kame_cli.serve.metrics import ServeMetrics
    from kame_cli.serve.processes import Backend, FrontendHost

_START_TIMEOUT_S = 120.0
_END_TIMEOUT_S = 1.5
_ARRIVALS = 3000  # frames (4 minutes)


@dataclasses.dataclass(frozen=True)
class ClientKind:
    """What a client understands: the handshake (kind 0) and kame's metadata (kind 4)."""

    handshake: bool = True
    metadata: bool = False

    @property
    def knows_errors(self) -> bool:
        """Kind 5: moshi's web page and kame's clients read it; moshi's Python client does not."""
        return self.handshake


async def read_until(ws: web.WebSocketResponse, stream: ClientStream, until: asyncio.Future[Any]) -> bool:
    """Read what the client sends, checked and dropped, until `until` is done; False if it left first.

    A client that waits on the server (queued, or its session starting) must still be read: aiohttp
    reads the heartbeat's pongs only inside `receive()`, and closes a socket whose pong went unread.
    Audio goes through `stream`'s decoder, so the Ogg stream stays whole for what comes after.
    Raises `SessionClosed` for what breaks the protocol."""
    while not until.done():
        receive = asyncio.ensure_future(stream.next(ws, idle=False))
        done, _ = await asyncio.wait({receive, until}, return_when=asyncio.FIRST_COMPLETED)
        if receive not in done:
            receive.cancel()
            with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError, SessionClosed):
                await receive
            break
        message = receive.result()
        if message is None:
            return False
        if isinstance(message, protocol.Audio):
            stream.pcm(message.ogg)
    return True


class SessionClosed(Exception):
    """Why a session's WebSocket is to be closed: a close code and a one-line reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class ClientNotReading(SessionClosed):
    """The client does not read what the server sends: its send queue filled, or it answered none of
    the heartbeat's pings (whichever comes first on a loaded machine). Counted in
    `kame_slow_clients_total`."""


_NOT_READING = "the client does not read what the server sends: disconnected"


class ClientStream:
    """A client's messages, each checked against the protocol, its audio decoded (Ogg/Opus, 24 kHz)."""

    def __init__(self, idle_timeout_s: float | None) -> None:
        """`idle_timeout_s`: close after this long without a message (None: wait; a queued client
        may stay quiet, kame's client sends nothing before its handshake)."""
        import sphn

        self.idle_timeout_s = idle_timeout_s
        self._opus = sphn.OpusStreamReader(24_000)

    async def next(self, ws: web.WebSocketResponse, *, idle: bool = True) -> protocol.Message | None:
        """The next message; None when the client closed; `SessionClosed` for what breaks the protocol.
        `idle=False`: no idle timeout (the client waits on the server, and may stay quiet)."""
        from aiohttp import WSMsgType

        try:
            message = await ws.receive(timeout=self.idle_timeout_s if idle else None)
        except TimeoutError:
            raise SessionClosed(1001, f"no message for {self.idle_timeout_s or 0:.0f} s: idle") from None
        if message.type == WSMsgType.TEXT:
            raise SessionClosed(1003, "text frames are not moshi's protocol: send binary messages")
        if message.type == WSMsgType.ERROR:
            if isinstance(message.data, TimeoutError):  # aiohttp's heartbeat: no pong came back
                raise ClientNotReading(1008, f"{_NOT_READING} (no answer to pings)")
            raise SessionClosed(1009, f"a bad message ({one_line(message.data)})")
        if message.type != WSMsgType.BINARY:
            return None
        try:
            return protocol.decode(message.data)
        except protocol.ProtocolError as err:
            raise SessionClosed(1003, str(err)) from None

    def pcm(self, ogg: bytes) -> np.ndarray:
        try:
            return np.asarray(self._opus.append_bytes(ogg), dtype=np.float32)
        except ValueError as err:
            raise SessionClosed(1003, f"audio that is not Ogg/Opus ({one_line(err)})") from None


@dataclasses.dataclass(eq=False)
class ServeSession:
    """A session from handshake to close; `run` returns when the client left or the server stops.

    Made on the server's event loop. `on_frontend_free` is called as soon as the host stopped this
    session's loop, before the back-end and the log are closed: the next client's session can
    start meanwhile."""

    sid: int
    host: FrontendHost
    backend: Backend | None
    _: dataclasses.KW_ONLY
    api_base: str | None
    log_dir: Path | None
    client: ClientKind
    send_queue: int
    metrics: ServeMetrics
    idle_timeout_s: float = 30.0
    on_frontend_free: Callable[[], None] | None = None
    transport: asyncio.BaseTransport | None = None

    def __post_init__(self) -> None:
        self.clock = SessionClock()
        self.bus = EventBus()
        self.stats: dict[str, int] = {}
        self._loop = asyncio.get_running_loop()
        self._outbox: asyncio.Queue[protocol.Message] = asyncio.Queue(maxsize=self.send_queue)
        self._started: asyncio.Future[None] = self._loop.create_future()
        self._ended: asyncio.Future[dict[str, int]] = self._loop.create_future()
        self._backend_running: asyncio.Future[None] = self._loop.create_future()
        self._closing: SessionClosed | None = None
        self._error_told = False
        self._summarized = False
        self._arrivals = np.zeros(_ARRIVALS)
        """When each of the last frames came (session time), by index: the STT's audio time is the
        client's frame count, which a burst or a slow start puts apart from the session's clock."""
        self._closer: asyncio.Task[None] | None = None
        self._ws: web.WebSocketResponse | None = None
        self._pending: np.ndarray = np.zeros(0, dtype=np.float32)
        self._frames_in = 0
        self._wavs: list[Any] = []
        self._log: Any = None
        self._writer: Any = None

    # --- messages from the host (reader thread) ---------------------------------------------------

    def from_host(self, message: Any) -> None:
        if isinstance(message, OutputFrame):
            self._loop.call_soon_threadsafe(self._on_output, message)
        elif isinstance(message, SessionEvent):
            if self._summarized:
                return  # a step the host made after the session's summary: not this log's any more
            event = message.event
            if isinstance(event, Failure):
                self._loop.call_soon_threadsafe(self._fail, SessionClosed(1011, event.message))
                return
            self.bus.publish(event)
            if isinstance(event, StepTiming):
                self.metrics.observe_step(event.total_ms)
            elif isinstance(event, DeadlineMiss):
                self.metrics.deadline_misses.inc()
            elif isinstance(event, FrontendText):
                backend = self.backend
                if backend is not None and self._backend_running.done():
                    backend.child.link.send(event)
                self._loop.call_soon_threadsafe(self._enqueue, protocol.Text(event.text))
        elif isinstance(message, SessionStarted):
            self._loop.call_soon_threadsafe(_settle, self._started, None)
        elif isinstance(message, SessionEnded):
            self._loop.call_soon_threadsafe(_settle, self._ended, message.stats)

    # --- messages from the back-end (reader thread) -------------------------------------------------

    def from_backend(self, message: Any) -> None:
        if isinstance(message, OracleReset | OracleAppend | OracleClear):
            self.host.send(SessionEvent(self.sid, message))
            return
        if isinstance(message, Running):
            self._loop.call_soon_threadsafe(_settle, self._backend_running, None)
        elif isinstance(message, Failure):
            self.bus.publish(BackendStatus(self.clock.now(), "backend", "error", message.message))
        elif type(message).__module__ == "kame_cli.events" and hasattr(message, "t"):
            # The back-end was loaded ahead, on a clock of its own: its times move onto this session's.
            if self.backend is not None:
                shift = self.backend.clock_origin - self.clock.origin
                message = dataclasses.replace(message, t=message.t + shift)
            self.bus.publish(message)
            if isinstance(message, OracleRequestStarted):
                self.metrics.oracle_requests.inc()
            elif isinstance(message, OracleFinished) and message.outcome == "failed":
                self.metrics.oracle_failures.inc()
            elif isinstance(message, FinalTranscript):
                heard_at = self._arrival(message.audio_end)
                if heard_at is not None:
                    self.metrics.stt_commit_lag.observe(max(0.0, message.t - heard_at))

    def backend_gone(self) -> None:
        # The voice goes on without STT and LLM; the client hears about it only if it asked.
        self.bus.publish(BackendStatus(self.clock.now(), "backend", "error", "back-end process died"))

    # --- life cycle -------------------------------------------------------------------------------

    async def run(self, ws: web.WebSocketResponse) -> None:
        """Start the session's parts, handshake, relay until the client leaves; the log is complete after."""
        import sphn

        self._ws = ws
        self._writer = sphn.OpusStreamWriter(24_000)
        sender = None
        if self.client.metadata:
            # Every event of the session, as its log has it (the client's panel and log are fed by them).
            loop = self._loop

            def forward(event: Any) -> None:
                loop.call_soon_threadsafe(self._enqueue_event, event)

            self.bus.forward("client", forward, lambda _: True)
        try:
            self._open_log()
            stream = ClientStream(self.idle_timeout_s)
            await self._start_reading(ws, stream)
            # The handshake goes first, before anything queued meanwhile (events, the voice's first frames).
            if self.client.handshake:
                await ws.send_bytes(protocol.encode(protocol.Handshake()))
            if self.client.metadata:
                info = self.host.info
                for first in (
                    metadata.SessionTime(self.clock.now()),
                    metadata.TokenPieces(tuple(info.get("pieces", ())), int(info.get("start_id", -1))),
                ):
                    await ws.send_bytes(protocol.encode(protocol.Metadata(metadata.to_json(first))))
            sender = asyncio.create_task(self._send_loop())
            await self._receive(ws, stream)
        except SessionClosed as closed:
            self._settle(closed)
        except ConnectionError:
            pass  # the client left while its session started: the log is completed all the same
        finally:
            if sender is not None:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender
            await self._finish()
            if not ws.closed:
                closing = self._closing
                if closing is not None:
                    await self._tell_error(ws, closing)
                code, reason = (closing.code, closing.reason) if closing else (1000, "session ended")
                with contextlib.suppress(ConnectionError, RuntimeError, asyncio.TimeoutError):
                    await asyncio.wait_for(ws.close(code=code, message=reason[:120].encode()), 1.0)

    def stop(self, code: int, reason: str) -> None:
        """End the session from the server's side (shutdown): the client is told why."""
        self._fail(SessionClosed(code, reason))

    def _settle(self, closed: SessionClosed) -> bool:
        """Take `closed` as the reason the session closes, unless it has one already (the first wins:
        a later one, such as the shutdown that follows a front-end's death, is not sent)."""
        if self._closing is not None:
            return False
        self._closing = closed
        if isinstance(closed, ClientNotReading):
            self.metrics.slow_clients.inc()
        return True

    def _fail(self, closed: SessionClosed) -> None:
        """Close the session for `closed`'s reason, if it is the first."""
        if not self._settle(closed):
            return
        ws = self._ws
        if ws is not None and not ws.closed:
            # Closing ends `_receive`'s loop; `run` then completes the log.
            self._closer = self._loop.create_task(self._close_for(ws, closed))

    async def _tell_error(self, ws: web.WebSocketResponse, closed: SessionClosed) -> None:
        """Kind 5 with the reason, once, to a client that knows it."""
        if not self.client.knows_errors or self._error_told:
            return
        self._error_told = True
        with contextlib.suppress(ConnectionError, RuntimeError, asyncio.TimeoutError):
            await asyncio.wait_for(ws.send_bytes(protocol.encode(protocol.Error(closed.reason))), 0.5)

    async def _close_for(self, ws: web.WebSocketResponse, closed: SessionClosed) -> None:
        await self._tell_error(ws, closed)
        timed_out = False
        try:
            await asyncio.wait_for(ws.close(code=closed.code, message=closed.reason[:120].encode()), 1.0)
        except (TimeoutError, ConnectionError, RuntimeError):
            timed_out = True
        # A client that does not read cannot take a close frame either: drop the connection. Bytes
        # still unsent by now mean the same (a timed-out send can leave the socket closing with its
        # buffer held, and the connection open, for as long as the client does not read).
        transport = self.transport
        if isinstance(transport, asyncio.WriteTransport) and (
            timed_out or transport.get_write_buffer_size() > 0
        ):
            transport.abort()

    def _open_log(self) -> None:
        if self.log_dir is None:
            return
        from kame_cli.audio_io import WavSink
        from kame_cli.session.files import INPUT_WAV, OUTPUT_WAV, open_session_file
        from kame_cli.session.log import SessionLog

        self._log = SessionLog(self.bus, self.log_dir)
        for name in (INPUT_WAV, OUTPUT_WAV):
            fd = open_session_file(self._log.directory, name)
            wav = WavSink(name, private=True, fd=fd)
            wav.start()
            self._wavs.append(wav)
        self._log.start()

    async def _start_reading(self, ws: web.WebSocketResponse, stream: ClientStream) -> None:
        """Start the session's parts while reading the client (a slow start must not let the heartbeat
        close it). The start always runs to its end, even when the client left: a session the host
        started is then ended by `_finish`, not leaked."""
        start = asyncio.ensure_future(self._start_parts())
        try:
            present = await read_until(ws, stream, start)
        except SessionClosed:
            with contextlib.suppress(SessionClosed):
                await start
            raise
        await start
        if not present:
            raise ConnectionError("the client left while its session started")

    async def _start_parts(self) -> None:
        backend = self.backend
        if backend is not None:
            backend.route = self.from_backend
            backend.on_gone = self.backend_gone
            await asyncio.to_thread(backend.ready.wait, _START_TIMEOUT_S)
            if backend.failure is not None:
                raise SessionClosed(1011, f"the speech recognizer failed to start: {backend.failure}")
            backend.child.link.send(Go(self.host.info.get("tokenizer_proto"), self.api_base))
            try:
                await asyncio.wait_for(asyncio.shield(self._backend_running), 30.0)
            except TimeoutError:
                raise SessionClosed(1011, "the speech recognizer did not start within 30 s") from None
        self.host.send(StartSession(self.sid, self.clock.origin))
        try:
            await asyncio.wait_for(asyncio.shield(self._started), _START_TIMEOUT_S)
        except TimeoutError:
            raise SessionClosed(1011, "the front-end did not start the session") from None
        self.bus.publish(BackendStatus(self.clock.now(), "session", "ok", "started"))

    async def _receive(self, ws: web.WebSocketResponse, stream: ClientStream) -> None:
        while (message := await stream.next(ws)) is not None:
            if isinstance(message, protocol.Audio):
                self._on_pcm(stream.pcm(message.ogg))
            # Text, control, metadata and ping from a client carry nothing a session needs.

    def _arrival(self, audio_time: float) -> float | None:
        """When the frame holding `audio_time` came, if it is among the last `_ARRIVALS`."""
        index = max(0, int(audio_time / FRAME_SECONDS - 1e-9))
        if index >= self._frames_in or index < self._frames_in - _ARRIVALS:
            return None
        return float(self._arrivals[index % _ARRIVALS])

    def _on_pcm(self, pcm: np.ndarray) -> None:
        if pcm.size == 0:
            return
        pending = np.concatenate((self._pending, pcm))
        while pending.size >= FRAME_SAMPLES:
            frame, pending = pending[:FRAME_SAMPLES], pending[FRAME_SAMPLES:]
            self._on_frame(frame)
        self._pending = pending

    def _on_frame(self, frame: np.ndarray) -> None:
        index = self._frames_in
        self._arrivals[index % _ARRIVALS] = self.clock.now()
        self._frames_in += 1
        data = frame.tobytes()
        self.host.send_frame(ClientFrame(self.sid, data))
        backend = self.backend
        if backend is not None and self._backend_running.done():
            backend.child.link.send_frame(UserFrame(index, data))
        if self._wavs:
            self._wavs[0].write(index, frame)

    def _on_output(self, message: OutputFrame) -> None:
        pcm = np.frombuffer(message.pcm, dtype=np.float32)
        if len(self._wavs) > 1:
            self._wavs[1].write(message.index, pcm)
        ogg = self._writer.append_pcm(pcm)
        if ogg:
            self._enqueue(protocol.Audio(ogg))
        if self.client.metadata:
            mark = metadata.OutputMark(message.index, message.produced)
            self._enqueue(protocol.Metadata(metadata.to_json(mark)))

    def _enqueue_event(self, event: Any) -> None:
        self._enqueue(protocol.Metadata(metadata.to_json(event)))

    def _enqueue(self, message: protocol.Message) -> None:
        if self._closing is not None:
            return
        try:
            self._outbox.put_nowait(message)
        except asyncio.QueueFull:
            self._fail(ClientNotReading(1008, _NOT_READING))

    async def _send_loop(self) -> None:
        ws = self._ws
        assert ws is not None
        while True:
            message = await self._outbox.get()
            try:
                await ws.send_bytes(protocol.encode(message))
            except (ConnectionError, RuntimeError):
                return

    async def _finish(self) -> None:
        """Stop the session's loop and back-end, then complete the log: summary, `stopped`, files."""
        if self._started.done():
            self.host.send(EndSession(self.sid))
            with contextlib.suppress(asyncio.TimeoutError):
                self.stats = await asyncio.wait_for(asyncio.shield(self._ended), _END_TIMEOUT_S)
        if self.on_frontend_free is not None:
            self.on_frontend_free()
        backend = self.backend
        if backend is not None:
            backend.route = None
            await asyncio.to_thread(backend.stop)
        s = self.stats
        self.metrics.late_frames.inc(s.get("late_frames", 0))
        self.bus.publish(
            SessionSummary(
                self.clock.now(),
                steps=s.get("steps", 0),
                deadline_misses=s.get("deadline_misses", 0),
                dropped_frames=s.get("dropped_frames", 0),
                stt_dropped_frames=0,
                stt_decodes_skipped=0,
                backend_restarts=0,
            )
        )
        self.bus.publish(BackendStatus(self.clock.now(), "session", "ok", "stopped"))
        self._summarized = True
        await asyncio.to_thread(self._close_files)

    def _close_files(self) -> None:
        for wav in self._wavs:
            with contextlib.suppress(Exception):
                wav.close()
        if self._log is not None:
            self._log.close()


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)
