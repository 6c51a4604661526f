"""The bundled SmolLM2 served from a Q8_0 copy: the same model, made once, never half-written."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter
from gguf.quants import dequantize, quantize

from kame_cli.backends.oracle.config import BUNDLED_GGUF
from kame_cli.backends.oracle.local_server import LocalLlamaServer, bundled_gguf_path, serving_gguf
from kame_cli.backends.oracle.requant import q8_0_copy

Q4_1, Q8_0 = GGMLQuantizationType.Q4_1, GGMLQuantizationType.Q8_0


def _weights(tensor, rows: int | None = None) -> np.ndarray:
    """A tensor's values (of its first `rows` rows: each row is whole blocks, so it decodes alone)."""
    data = np.asarray(tensor.data)
    if rows is not None and data.ndim > 1:
        data = data[:rows]
    return dequantize(data, GGMLQuantizationType(tensor.tensor_type)).ravel()


def _metadata(reader: GGUFReader) -> dict:
    return {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}


def test_the_bundled_model_is_served_as_q8_0_with_its_metadata_and_weights(smollm2: LocalLlamaServer) -> None:
    served = serving_gguf(BUNDLED_GGUF)
    assert smollm2.gguf == served  # what the tests' server (and a session's) loads
    source, copy = GGUFReader(bundled_gguf_path()), GGUFReader(served)
    assert {t.name: GGMLQuantizationType(t.tensor_type) for t in copy.tensors} == {
        t.name: Q8_0 if t.tensor_type == Q4_1 else GGMLQuantizationType(t.tensor_type) for t in source.tensors
    }
    assert any(t.tensor_type == Q4_1 for t in source.tensors)
    copied = {t.name: t for t in copy.tensors}
    for tensor in source.tensors:
        twin = copied[tensor.name]
        assert list(twin.shape) == list(tensor.shape), tensor.name
        before, after = _weights(tensor, rows=16), _weights(twin, rows=16)  # every tensor, in part
        # Q8_0 keeps 8 bits of each block's range: far finer than the 4 bits it was read from.
        scale = np.abs(before).max() or 1.0
        assert np.abs(after - before).max() <= scale / 100, tensor.name
    fields, expected = _metadata(copy), _metadata(source)
    # "Mostly Q8_0" (7), from "mostly Q4_1" (3); every other key as it was.
    assert fields.pop("general.file_type") == 7 and expected.pop("general.file_type") == 3
    assert fields == expected


def _tiny_gguf(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    writer = GGUFWriter(path, "llama")
    writer.add_string("general.name", "tiny")
    writer.add_uint32("general.file_type", 3)
    writer.add_array("tokenizer.ggml.tokens", ["a", "b"])
    writer.add_tensor("w", quantize(rng.standard_normal((4, 64)).astype(np.float32), Q4_1), raw_dtype=Q4_1)
    writer.add_tensor("norm", rng.standard_normal(64).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_the_copy_is_made_once_and_again_when_the_source_changes(tmp_path: Path) -> None:
    source = _tiny_gguf(tmp_path / "tiny.gguf")
    cache = tmp_path / "cache"
    first = q8_0_copy(source, cache)
    made = first.stat().st_mtime_ns
    assert q8_0_copy(source, cache) == first and first.stat().st_mtime_ns == made
    reader = GGUFReader(first)
    assert {t.name: GGMLQuantizationType(t.tensor_type) for t in reader.tensors} == {
        "w": Q8_0,
        "norm": GGMLQuantizationType.F32,
    }
    _tiny_gguf(source, seed=1)  # a reinstalled model: another file under the same name...
    later = made + 5_000_000_000  # ...written later (file times can be coarser than two writes here)
    os.utime(source, ns=(later, later))
    second = q8_0_copy(source, cache)
    assert second != first
    remade, original = (_weights(GGUFReader(path).tensors[0]) for path in (second, source))
    assert np.allclose(remade, original, atol=0.05)


def test_callers_at_once_share_one_complete_copy(tmp_path: Path) -> None:
    source = _tiny_gguf(tmp_path / "tiny.gguf")
    cache = tmp_path / "cache"
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(q8_0_copy(source, cache))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(set(results)) == 1 and len(results) == 4
    assert sorted(p.name for p in cache.iterdir()) == sorted([".gguf.lock", results[0].name])
    assert GGUFReader(results[0]).tensors[0].tensor_type == Q8_0


def test_a_broken_source_leaves_no_file_and_the_bundled_model_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 64)
    cache = tmp_path / "cache"
    with pytest.raises((ValueError, OSError)):
        q8_0_copy(broken, cache)
    assert [p.name for p in cache.iterdir()] == [".gguf.lock"]  # no copy, no half-written part
    # A cache that cannot be made (here a file stands where its folder should be): the bundled
    # Q4_1 file is served instead, and the user's own GGUF is always served as it is.
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("KAME_CACHE_DIR", str(tmp_path / "not-a-folder" / "kame"))
    assert serving_gguf(BUNDLED_GGUF) == bundled_gguf_path()
    assert serving_gguf(str(broken)) == broken
