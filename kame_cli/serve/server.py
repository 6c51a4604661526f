"""`kame serve`: aiohttp serving moshi's protocol on `/api/chat`, plus `/healthz` and `/metrics`.

This process (the supervisor) owns the sockets, the codecs, the admission queue and the session
logs. The front-end runs in its host process (`serve.host`), each session's STT and oracle in a
back-end process of its own (`processes`), so nothing a client does reaches the real-time loop's
interpreter.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kame_cli.errors import ConfigError, KameError, RuntimeFailure
from kame_cli.serve import metadata, page, protocol
from kame_cli.serve.admission import Admission, Ticket
from kame_cli.serve.metrics import ServeMetrics
from kame_cli.serve.options import ServeOptions, frontend_config
from kame_cli.serve.security import (
    ConnectionGate,
    bound_send_buffers,
    guarded_site,
    origin_allowed,
    token_matches,
)
from kame_cli.serve.session import (
    ClientKind,
    ClientNotReading,
    ClientStream,
    ServeSession,
    SessionClosed,
    read_until,
)
from kame_cli.serve.wire import HostSetup, SessionMessage

if TYPE_CHECKING:
    from aiohttp import web

    from kame_cli.serve.processes import BackendPool, FrontendHost
    from kame_cli.serve.tls import Tls
    from kame_cli.session.child import Launcher

_LOAD_TIMEOUT_S = 600.0
_SHUTDOWN_S = 1.5
_RETRY_AFTER_S = 10
_HEARTBEAT_S = 15.0
"""WebSocket pings: a client (queued ones too) whose pong does not come back is closed."""


class KameServer:
    """Loads the front-end once, then admits and serves sessions until `stop`."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.metrics = ServeMetrics()
        self.admission = Admission(options.max_queue, options.max_sessions)
        self.host: FrontendHost | None = None
        self.pool: BackendPool | None = None
        self.api_base: str | None = None
        self.loaded = False
        self.port = options.port
        self._stack = contextlib.ExitStack()
        self._sessions: dict[int, ServeSession] = {}
        self._waiting: set[Any] = set()
        self._next_sid = 0
        self._stop = asyncio.Event()
        self._no_sessions = asyncio.Event()
        self._no_sessions.set()
        self._failure: str | None = None
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.gate: ConnectionGate | None = None

    # --- start and stop ---------------------------------------------------------------------------

    async def serve(self) -> int:
        """Bind, load, serve until SIGINT/SIGTERM (0) or the front-end process dies (1)."""
        from aiohttp import web

        self._loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._loop.add_signal_handler(sig, self._stop.set)
        o = self.options
        gate = self.gate = ConnectionGate(
            o.connections_per_address, o.handshake_timeout_s, o.max_message_bytes
        )

        @web.middleware
        async def reached(request: web.Request, handler: Any) -> web.StreamResponse:
            gate.reached_handler(request.transport)
            response: web.StreamResponse = await handler(request)
            if not isinstance(response, web.WebSocketResponse):
                # One request per connection: the gate reads a connection's bytes as frames after an
                # upgrade head, and never has to follow HTTP keep-alive.
                response.force_close()
            return response

        app = web.Application(middlewares=[reached])
        app.router.add_get("/api/chat", self.handle_chat)
        app.router.add_get("/healthz", self.handle_healthz)
        app.router.add_get("/metrics", self.handle_metrics)
        page.add_routes(app)
        tls = self._tls()
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, keepalive_timeout=5.0)
        await self._runner.setup()
        site = guarded_site(
            self._runner, self.options.host, self.options.port, gate, None if tls is None else tls.context
        )
        try:
            await site.start()
        except OSError as err:
            await self._runner.cleanup()
            raise ConfigError(
                f"cannot listen on {self.options.host}:{self.options.port} ({err.strerror}): "
                "choose another --port or --host"
            ) from err
        address = self._runner.addresses[0]
        self.port = int(address[1])
        scheme = "https" if tls else "http"
        if tls is not None:
            say(f"TLS certificate {tls.cert_path} (SHA-256 {tls.fingerprint})")
        say(f"loading the front-end; health at {scheme}://{self.options.host}:{self.port}/healthz")
        try:
            loading = asyncio.create_task(asyncio.to_thread(self._load))
            stop = asyncio.create_task(self._stop.wait())
            await asyncio.wait({loading, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not loading.done():
                stop.cancel()
                await self._shutdown()
                with contextlib.suppress(BaseException):
                    await loading
                self._stack.close()
                return 0
            stop.cancel()
            loading.result()
            self.loaded = True
            say(f"ready: {'wss' if tls else 'ws'}://{self.options.host}:{self.port}/api/chat")
            await self._stop.wait()
        finally:
            await self._shutdown()
        if self._failure is not None:
            raise RuntimeFailure(self._failure)
        return 0

    def _tls(self) -> Tls | None:
        from kame_cli.serve.tls import load_tls, self_signed

        o = self.options
        if o.ssl_cert is not None and o.ssl_key is not None:
            return load_tls(o.ssl_cert, o.ssl_key)
        if o.ssl_self_signed:
            import tempfile

            return self_signed(Path(tempfile.mkdtemp(prefix="kame-serve-tls-")), o.host)
        return None

    def _load(self) -> None:
        """The profile, the LLM server if it has one, the front-end host and the first spare back-end."""
        from kame_cli.profiles import check_environment, load_profile, prepare_llm_backend
        from kame_cli.serve.processes import Backend, BackendPool, FrontendHost, deprioritize_llm_server
        from kame_cli.session.wire import BackendSetup

        o = self.options
        profile = load_profile(o.profile)
        frontend = frontend_config(profile, o)
        check_environment(profile)
        host_launch, backend_launch = self._launchers()
        self.host = FrontendHost(
            HostSetup(frontend, o.jitter_frames, o.max_sessions),
            self._from_host,
            self._host_gone,
            launch=host_launch,
        )
        self._stack.callback(self.host.stop)
        self.api_base = self._stack.enter_context(prepare_llm_backend(profile))
        deprioritize_llm_server()
        self.pool = BackendPool(
            BackendSetup(
                stt=profile.stt,
                llm=profile.llm,
                policy=profile.policy,
                prompt=profile.prompt,
                clock_origin=time.monotonic(),
                realtime=True,
                attempt=1,
                knowledge=profile.knowledge if profile.knowledge.documents else None,
                tools=profile.tools,
            ),
            slots=o.max_sessions,
            make=lambda setup, on_stopped: Backend(setup, on_stopped, launch=backend_launch),
        )
        self._stack.callback(self.pool.close)
        self.pool.fill()
        self.host.wait_ready(_LOAD_TIMEOUT_S)
        self.pool.wait_spare(_LOAD_TIMEOUT_S)  # "ready" and /healthz 200 mean a session starts at once

    def _launchers(self) -> tuple[Launcher, Launcher]:
        """How the front-end host and each session's back-end start: as a `kame talk`'s children do
        (`session_launcher`: forked from the warm templates `KAME_TEMPLATES` names when that folder
        is trusted, as inside `kame eval` or the test suite); else the host as a fresh interpreter
        and every back-end from this server's own back-end template, which imports what they all
        import once. Their closes run after the host's and the pool's: a template reports the ends
        of the children it forked."""
        from kame_cli.session.child import launch_module
        from kame_cli.session.template import Template, session_launcher

        launcher = self._stack.enter_context(session_launcher())
        if launcher is not launch_module:
            return launcher, launcher
        template = Template("backend")
        template.start()
        self._stack.callback(template.close)
        return launch_module, template.launch

    async def _shutdown(self) -> None:
        """Stop accepting, tell every client, complete every log, stop the children."""
        if self._runner is None:
            return
        runner, self._runner = self._runner, None
        for site in list(runner.sites):
            await site.stop()  # no new connections from here on
        if self.pool is not None:
            await asyncio.to_thread(self.pool.close)  # before the sessions end: none is replaced
        for session in list(self._sessions.values()):
            session.stop(1001, "the server is shutting down")
        for ws in list(self._waiting):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(code=1001, message=b"the server is shutting down"), 0.5)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._no_sessions.wait(), _SHUTDOWN_S)
        await asyncio.to_thread(self._stack.close)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(runner.cleanup(), 0.5)

    def stop(self) -> None:
        self._stop.set()

    # --- the front-end host's messages (its link's reader thread) --------------------------------

    def _from_host(self, message: Any) -> None:
        # Every message about a session goes to that session, if it still runs.
        if isinstance(message, SessionMessage):
            session = self._sessions.get(message.session)
            if session is not None:
                session.from_host(message)

    def _host_gone(self) -> None:
        # Every session ends with an error (kind 5 to clients that know it) and the server exits 1:
        # a restarted front-end would take as long as a restarted server, and a supervisor (systemd,
        # a container runtime) restarts the whole server better than it restarts half of one.
        loop = self._loop
        if loop is None:
            return
        self._failure = "the front-end process died: every session was ended; restart kame serve"

        def end_all() -> None:
            for session in list(self._sessions.values()):
                session.stop(1011, "the server's front-end process died")
            self._stop.set()

        loop.call_soon_threadsafe(end_all)

    # --- HTTP ---------------------------------------------------------------------------------------

    async def handle_healthz(self, request: web.Request) -> web.Response:
        from aiohttp import web

        if not self.loaded:
            return web.Response(status=503, text="loading\n", headers={"Retry-After": str(_RETRY_AFTER_S)})
        if not self.admission.can_start_now():
            return web.Response(status=503, text="full\n", headers={"Retry-After": str(_RETRY_AFTER_S)})
        return web.Response(text="ok\n")

    async def handle_metrics(self, request: web.Request) -> web.Response:
        from aiohttp import web

        self.metrics.sessions_queued.set(self.admission.queued)
        body, content_type = self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    def client_kind(self, request: web.Request) -> ClientKind:
        """kame's clients ask for metadata (`?kame=1`); moshi's Python client (aiohttp's User-Agent, no
        Origin) does not know kind 0 and never gets it; every other client (moshi's web page) does."""
        if request.query.get("kame") == "1":
            return ClientKind(handshake=True, metadata=True)
        agent = request.headers.get("User-Agent", "")
        moshi_python = agent.startswith("Python/") and "aiohttp/" in agent and "Origin" not in request.headers
        return ClientKind(handshake=not moshi_python, metadata=False)

    def refusal(self, request: web.Request) -> web.Response | None:
        """401 without the right token (when one is set), 403 for a foreign Origin, 426 for a plain HTTP
        request; None when the request may go on."""
        from aiohttp import web

        token = self.options.token
        if token is not None and not token_matches(request, token):
            self.metrics.refuse("token")
            return web.Response(
                status=401, text="a valid access token is needed (Authorization: Bearer, or ?token=)\n"
            )
        if not origin_allowed(request, self.options.allow_origin):
            self.metrics.refuse("origin")
            return web.Response(status=403, text="this Origin may not use the server (see --allow-origin)\n")
        if not web.WebSocketResponse().can_prepare(request).ok:
            self.metrics.refuse("not_websocket")
            return web.Response(
                status=426,
                text="/api/chat is a WebSocket (moshi's protocol): connect with a WebSocket client\n",
                headers={"Upgrade": "websocket", "Connection": "Upgrade"},
            )
        return None

    async def handle_chat(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        refused = self.refusal(request)
        if refused is not None:
            return refused
        if not self.loaded or self._stop.is_set():
            self.metrics.refuse("loading")
            return web.Response(
                status=503, text="the server is loading\n", headers={"Retry-After": str(_RETRY_AFTER_S)}
            )
        ticket = self.admission.enter()
        if ticket is None:
            self.metrics.refuse("full")
            return web.Response(
                status=503,
                text="server busy: every place is taken\n",
                headers={"Retry-After": str(_RETRY_AFTER_S)},
            )
        ws = web.WebSocketResponse(
            max_msg_size=self.options.max_message_bytes, autoping=True, heartbeat=_HEARTBEAT_S
        )
        try:
            await ws.prepare(request)
            bound_send_buffers(request.transport)
            self.metrics.sessions_queued.set(self.admission.queued)
            client = self.client_kind(request)
            if not ticket.ready:
                if client.metadata:
                    place = metadata.QueuePlace(self.admission.position(ticket))
                    await ws.send_bytes(protocol.encode(protocol.Metadata(metadata.to_json(place))))
                if not await self._wait_turn(ws, ticket):
                    return ws
            await self._run_session(ws, client, lambda: self.admission.leave(ticket), request.transport)
        finally:
            self.admission.leave(ticket)
            self.metrics.sessions_queued.set(self.admission.queued)
        return ws

    async def _wait_turn(self, ws: web.WebSocketResponse, ticket: Ticket) -> bool:
        """Hold a queued client until its turn; what it sends meanwhile is checked and dropped (moshi's
        server holds it on a lock). False if it left, broke the protocol, or the server stops."""
        stream = ClientStream(None)  # the heartbeat finds a queued client that is gone
        self._waiting.add(ws)
        try:
            try:
                if not await read_until(ws, stream, ticket.turn):
                    return False
            except SessionClosed as closed:
                if isinstance(closed, ClientNotReading):
                    self.metrics.slow_clients.inc()  # queued, it answered no ping: it does not read
                with contextlib.suppress(ConnectionError, RuntimeError, asyncio.TimeoutError):
                    await asyncio.wait_for(
                        ws.close(code=closed.code, message=closed.reason[:120].encode()), 1.0
                    )
                return False
            return ticket.ready and not ws.closed
        finally:
            self._waiting.discard(ws)

    async def _run_session(
        self,
        ws: web.WebSocketResponse,
        client: ClientKind,
        free: Callable[[], None],
        transport: asyncio.BaseTransport | None,
    ) -> None:
        assert self.host is not None and self.pool is not None
        self._next_sid += 1
        sid = self._next_sid
        log_dir = None
        if self.options.log_dir is not None:
            log_dir = self.options.log_dir / f"session-{time.strftime('%Y%m%d-%H%M%S')}-{sid}"
        session = ServeSession(
            sid,
            self.host,
            self.pool.take(),
            api_base=self.api_base,
            log_dir=log_dir,
            client=client,
            send_queue=self.options.send_queue,
            metrics=self.metrics,
            idle_timeout_s=self.options.idle_timeout_s,
            on_frontend_free=free,
            transport=transport,
        )
        self._sessions[sid] = session
        self._no_sessions.clear()
        self.metrics.sessions_total.inc()
        self.metrics.sessions_active.inc()
        peer = transport.get_extra_info("peername") if transport is not None else None
        say(
            f"session {sid} started for {peer[0] if peer else '?'}" + (f" (log {log_dir})" if log_dir else "")
        )
        try:
            await session.run(ws)
        except KameError as err:
            say(f"session {sid} failed: {err}")
        finally:
            s = session.stats
            say(
                f"session {sid} ended: {s.get('steps', 0)} steps, {s.get('deadline_misses', 0)} over budget, "
                f"{s.get('late_frames', 0)} late client frames"
            )
            self.metrics.sessions_active.dec()
            del self._sessions[sid]
            if not self._sessions:
                self._no_sessions.set()


def say(line: str) -> None:
    """One line on stderr: the server's own output (never audio, words or tokens)."""
    print(f"kame serve: {line}", file=sys.stderr, flush=True)


def run_server(options: ServeOptions) -> int:
    """`kame serve`'s body: every check a user's mistake can fail (options, profile, its key, the log
    folder, the certificate), then serve until a signal."""
    from kame_cli.profiles import check_environment, load_profile

    checked = options.check()
    profile = load_profile(checked.profile)
    frontend_config(profile, checked)
    check_environment(profile)
    if checked.log_dir is not None:
        if checked.log_dir.exists() and not checked.log_dir.is_dir():
            raise ConfigError(
                f"--log-dir {checked.log_dir}: not a folder: name a folder for the session logs"
            )
        try:
            checked.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as err:
            raise ConfigError(f"--log-dir {checked.log_dir}: cannot create it ({err.strerror})") from err
    return asyncio.run(KameServer(checked).serve())
