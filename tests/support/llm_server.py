"""LLM servers on loopback for tests: the real llama.cpp (xllamacpp + SmolLM2-135M) as a child
process, and wire-level fakes where nothing real can run here (Ollama's HTTP API; an
OpenAI-compatible endpoint that answers 429/5xx, hangs, or drops the connection mid-stream).

Everything binds 127.0.0.1 on a free port and is stopped by its context manager.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import pytest

from kame_cli.backends.oracle.config import BUNDLED_GGUF
from kame_cli.backends.oracle.local_server import LocalLlamaServer, serving_gguf

SMOLLM2_ALIAS = "smollm2"


@contextlib.contextmanager
def smollm2_server(
    *, port: int = 0, api_key_env: str | None = None, n_ctx: int = 2048
) -> Iterator[LocalLlamaServer]:
    """The real llama.cpp server on the bundled SmolLM2-135M (as a session serves it: its Q8_0
    copy), 1 thread, in a child process."""
    server = LocalLlamaServer(
        serving_gguf(BUNDLED_GGUF), SMOLLM2_ALIAS, threads=1, n_ctx=n_ctx, port=port, api_key_env=api_key_env
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def smollm2() -> Iterator[LocalLlamaServer]:
    """Fixture: one real llama.cpp server for the session (import it into a conftest.py to use it)."""
    with smollm2_server() as server:
        yield server


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    """Fixture: a fake Ollama holding `llama3.2:latest`, answering "Hello there, friend."."""
    with FakeOllama(OllamaState(models={"llama3.2:latest"})) as server:
        yield server


def free_port() -> int:
    """A loopback port nothing listens on (for connection-refused tests and fixed-port restarts)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def slot_busy(server_url: str) -> bool:
    """Whether llama.cpp is generating for some request now (its `/slots` endpoint)."""
    import httpx

    slots = httpx.get(f"{server_url}/slots", timeout=5.0).json()
    return any(slot.get("is_processing") for slot in slots)


# --- shared HTTP plumbing -----------------------------------------------------------------------


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-stream is what several tests provoke on purpose.
        return None


_Server = TypeVar("_Server", bound="_LoopbackHttp")


class _LoopbackHttp:
    """Runs a handler class on 127.0.0.1 in a thread; subclasses fill in the handler."""

    handler: type[BaseHTTPRequestHandler]

    def __init__(self) -> None:
        self._httpd: _QuietServer | None = None
        self._thread: threading.Thread | None = None
        self.requests: list[tuple[str, str, Any]] = []
        self.arrivals: list[float] = []
        """When each of `requests` came (`time.monotonic()`)."""
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> None:
        handler = type("Handler", (self.handler,), {"owner": self})
        self._httpd = _QuietServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def record(self, method: str, path: str, body: Any) -> None:
        with self.lock:
            self.requests.append((method, path, body))
            self.arrivals.append(time.monotonic())

    def paths(self) -> list[str]:
        with self.lock:
            return [path for _, path, _ in self.requests]

    def __enter__(self: _Server) -> _Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _JsonHandler(BaseHTTPRequestHandler):
    owner: Any
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else None

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def start_chunked(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


# --- fake Ollama ---------------------------------------------------------------------------------


@dataclass
class PullLayer:
    """One blob an Ollama pull downloads, reported in `steps` progress lines."""

    size: int = 4_000_000
    steps: int = 8


@dataclass
class OllamaState:
    models: set[str] = field(default_factory=set)
    reply: Callable[[dict[str, Any]], list[str]] = lambda request: ["Hello", " there", ", friend."]
    chunk_delay_s: float = 0.0
    pull_layers: list[PullLayer] = field(default_factory=lambda: [PullLayer(), PullLayer(size=1200, steps=2)])
    pull_delay_s: float = 0.0
    chats_started: int = 0
    chats_completed: int = 0
    chats_disconnected: int = 0


class _OllamaHandler(_JsonHandler):
    def do_GET(self) -> None:
        owner: FakeOllama = self.owner
        owner.record("GET", self.path, None)
        if self.path == "/":
            body = b"Ollama is running"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/api/version":
            self.send_json(200, {"version": "0.12.0"})
        elif self.path == "/api/tags":
            self.send_json(200, {"models": [_model_entry(name) for name in sorted(owner.state.models)]})
        else:
            self.send_json(404, {"error": "not found"})

    def do_POST(self) -> None:
        owner: FakeOllama = self.owner
        body = self.read_json() or {}
        owner.record("POST", self.path, body)
        if self.path == "/api/show":
            self._show(body)
        elif self.path == "/api/chat":
            self._chat(body)
        elif self.path == "/api/pull":
            self._pull(body)
        else:
            self.send_json(404, {"error": "not found"})

    def _show(self, body: dict[str, Any]) -> None:
        name = _canonical(body.get("model") or body.get("name") or "")
        if name not in self.owner.state.models:
            self.send_json(404, {"error": f"model '{name}' not found"})
            return
        self.send_json(
            200,
            {
                "modelfile": f"FROM {name}",
                "parameters": "stop <|im_end|>",
                "template": "{{ .Prompt }}",
                "details": _details(),
                "model_info": {"general.architecture": "llama", "llama.context_length": 8192},
                "capabilities": ["completion"],
            },
        )

    def _chat(self, body: dict[str, Any]) -> None:
        state: OllamaState = self.owner.state
        name = _canonical(body.get("model", ""))
        if name not in state.models:
            self.send_json(404, {"error": f'model "{name}" not found, try pulling it first'})
            return
        pieces = state.reply(body)
        with self.owner.lock:
            state.chats_started += 1
        started = time.time()
        try:
            if body.get("stream", True) is False:
                self.send_json(200, _chat_line(name, "".join(pieces), done=True, started=started))
            else:
                self.start_chunked("application/x-ndjson")
                for piece in pieces:
                    self.write_chunk(json.dumps(_chat_line(name, piece, done=False)).encode() + b"\n")
                    if state.chunk_delay_s:
                        time.sleep(state.chunk_delay_s)
                last = _chat_line(name, "", done=True, started=started)
                self.write_chunk(json.dumps(last).encode() + b"\n")
                self.end_chunked()
        except (BrokenPipeError, ConnectionResetError):
            with self.owner.lock:
                state.chats_disconnected += 1
            self.close_connection = True
            return
        with self.owner.lock:
            state.chats_completed += 1

    def _pull(self, body: dict[str, Any]) -> None:
        state: OllamaState = self.owner.state
        name = _canonical(body.get("model") or body.get("name") or "")
        self.start_chunked("application/x-ndjson")

        def line(payload: dict[str, Any]) -> None:
            self.write_chunk(json.dumps(payload).encode() + b"\n")
            if state.pull_delay_s:
                time.sleep(state.pull_delay_s)

        line({"status": "pulling manifest"})
        for index, layer in enumerate(state.pull_layers):
            digest = "sha256:" + hashlib.sha256(f"{name}/{index}".encode()).hexdigest()
            for step in range(layer.steps + 1):
                completed = layer.size * step // layer.steps
                line(
                    {
                        "status": f"pulling {digest[7:19]}",
                        "digest": digest,
                        "total": layer.size,
                        "completed": completed,
                    }
                )
        for status in ("verifying sha256 digest", "writing manifest", "success"):
            line({"status": status})
        with self.owner.lock:
            state.models.add(name)
        self.end_chunked()


def _canonical(name: str) -> str:
    return name if ":" in name else f"{name}:latest"


def _details() -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": "gguf",
        "family": "llama",
        "families": ["llama"],
        "parameter_size": "1.2B",
        "quantization_level": "Q4_K_M",
    }


def _model_entry(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "model": name,
        "modified_at": "2025-01-01T00:00:00Z",
        "size": 807_000_000,
        "digest": hashlib.sha256(name.encode()).hexdigest(),
        "details": _details(),
    }


def _chat_line(name: str, content: str, *, done: bool, started: float | None = None) -> dict[str, Any]:
    line: dict[str, Any] = {
        "model": name,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()),
        "message": {"role": "assistant", "content": content},
        "done": done,
    }
    if done:
        elapsed = int((time.time() - (started or time.time())) * 1e9)
        line.update(
            done_reason="stop",
            total_duration=elapsed,
            load_duration=1000,
            prompt_eval_count=12,
            prompt_eval_duration=1000,
            eval_count=5,
            eval_duration=max(elapsed, 1),
        )
    return line


class FakeOllama(_LoopbackHttp):
    """Speaks Ollama's HTTP API: `/api/chat` (NDJSON stream), `/api/show`, `/api/tags`, `/api/pull`."""

    handler = _OllamaHandler

    def __init__(self, state: OllamaState | None = None) -> None:
        super().__init__()
        self.state = state or OllamaState()


# --- fake OpenAI-compatible endpoint with faults -------------------------------------------------


class _OpenAIHandler(_JsonHandler):
    def do_GET(self) -> None:
        self.owner.record("GET", self.path, None)
        self.send_json(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})

    def do_POST(self) -> None:
        owner: FaultyOpenAI = self.owner
        body = self.read_json() or {}
        owner.record("POST", self.path, body)
        mode = owner.mode
        if isinstance(mode, int):
            kind = {429: "rate_limit_exceeded", 401: "invalid_api_key"}.get(mode, "server_error")
            self.send_json(
                mode,
                {"error": {"message": f"fake failure {mode}", "type": kind, "code": kind}},
                headers={"Retry-After": "0"} if mode == 429 else None,
            )
            return
        self.start_chunked("text/event-stream")
        try:
            for index, piece in enumerate(owner.pieces):
                if mode == "drop" and index == owner.drop_after:
                    # Hang up mid-body, no terminating chunk: a crashed or cut-off server.
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                delta: dict[str, Any] = {"content": piece}
                if index == 0:
                    delta["role"] = "assistant"
                self.write_chunk(_sse(_openai_chunk(delta, None)))
                if owner.chunk_delay_s:
                    time.sleep(owner.chunk_delay_s)
            if mode == "stall":
                while not owner.stopping.wait(0.05):
                    pass
                return
            self.write_chunk(_sse(_openai_chunk({}, "stop")))
            self.write_chunk(b"data: [DONE]\n\n")
            self.end_chunked()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def _openai_chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": "fake",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


class FaultyOpenAI(_LoopbackHttp):
    """An OpenAI-compatible `/v1/chat/completions` whose behaviour the test switches at run time.

    `mode`: "ok" (streams `pieces`), an HTTP status (e.g. 429, 503), "drop" (hangs up after
    `drop_after` chunks) or "stall" (sends `pieces`, then nothing, connection left open).
    """

    handler = _OpenAIHandler

    def __init__(self, pieces: list[str] | None = None) -> None:
        super().__init__()
        self.mode: str | int = "ok"
        self.pieces = pieces or ["Sure", ", the answer", " is forty two."]
        self.chunk_delay_s = 0.0
        self.drop_after = 1
        self.stopping = threading.Event()

    @property
    def api_base(self) -> str:
        return f"{self.url}/v1"

    def stop(self) -> None:
        self.stopping.set()
        super().stop()

    def completions(self) -> int:
        return sum(1 for path in self.paths() if path.endswith("/chat/completions"))


# --- a server that accepts connections and never answers ----------------------------------------


class SilentServer:
    """Accepts TCP connections on loopback, reads what comes, never writes a byte."""

    def __init__(self) -> None:
        self.accepted = 0
        self.closed_by_client = 0
        self._stopping = threading.Event()
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                with owner._lock:
                    owner.accepted += 1
                self.request.settimeout(0.05)
                while not owner._stopping.is_set():
                    try:
                        if not self.request.recv(65536):
                            with owner._lock:
                                owner.closed_by_client += 1
                            return
                    except TimeoutError:
                        continue
                    except OSError:
                        return

        self._lock = threading.Lock()
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)
