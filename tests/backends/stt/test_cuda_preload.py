"""CUDA STT out of the box: cuBLAS/cuDNN preloaded by path from the pip packages' layout, and the
fall-back to tiny.en on CPU when CUDA STT cannot start.

Loading libraries changes the process for good, so every check runs in a fresh interpreter.
"""

from __future__ import annotations

import ctypes
import os
import shutil
from pathlib import Path

import pytest

from kame_cli.backends.stt.cuda import CUDA_LIBRARIES, find_cuda_libraries, loaded_path
from kame_cli.backends.stt.model import bundled_tiny_en
from tests.support.python import run_python, succeeded

_PRELOAD = """
import json, sys
from pathlib import Path
from kame_cli.backends.stt.cuda import preload_cuda_libraries
report = preload_cuda_libraries([Path(sys.argv[1])], system=False)
maps = Path("/proc/self/maps").read_text()
print(json.dumps(dict(
    ok=report.ok,
    libraries=[[lib.soname, lib.source, lib.path, lib.error] for lib in report.libraries],
    mapped=[lib.path for lib in report.libraries if lib.path and lib.path in maps],
    describe=report.describe(),
)))
"""


def _python(code: str, *args: str, env: dict[str, str] | None = None) -> dict:
    return succeeded(run_python(code, *args, env=env))


def _real_shared_library() -> Path:
    """A real ELF shared library of this machine (zlib: Python itself links it)."""
    path = loaded_path(ctypes.CDLL("libz.so.1"))
    assert path is not None and Path(path).is_file()
    return Path(path)


def _pip_layout(root: Path, sonames: list[str]) -> None:
    """`root/nvidia/<package>/lib/<soname>` as the nvidia-* wheels lay it out, each a real library."""
    source = _real_shared_library()
    for wanted in CUDA_LIBRARIES:
        if wanted.soname in sonames:
            folder = root / "nvidia" / wanted.package / "lib"
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, folder / wanted.soname)


def test_every_library_of_the_pip_layout_is_loaded_by_path_in_dependency_order(tmp_path: Path) -> None:
    _pip_layout(tmp_path, [w.soname for w in CUDA_LIBRARIES])
    result = _python(_PRELOAD, str(tmp_path))
    assert result["ok"] is True
    names = [soname for soname, _, _, _ in result["libraries"]]
    # Dependencies first: cublasLt before cublas, cudnn_graph before the parts linking it, the shim last.
    assert names.index("libcublasLt.so.12") < names.index("libcublas.so.12")
    assert names[names.index("libcudnn_graph.so.9") :][-1] == "libcudnn.so.9"
    for soname, source, path, error in result["libraries"]:
        package = "cublas" if soname.startswith("libcublas") else "cudnn"
        assert (source, error) == ("pip", None)
        assert path == str(tmp_path / "nvidia" / package / "lib" / soname)
    assert len(result["mapped"]) == len(CUDA_LIBRARIES)  # really in the process, not just found
    cublas_dir = tmp_path / "nvidia" / "cublas" / "lib"
    assert result["describe"].startswith(f"cuBLAS 12 from {cublas_dir}; cuDNN 9 from ")


def test_missing_or_broken_cublas_is_reported_and_cudnn_still_loads(tmp_path: Path) -> None:
    _pip_layout(tmp_path, [w.soname for w in CUDA_LIBRARIES if w.package == "cudnn"])
    (tmp_path / "nvidia" / "cublas" / "lib").mkdir(parents=True)
    (tmp_path / "nvidia" / "cublas" / "lib" / "libcublas.so.12").write_text("not a library\n")
    result = _python(_PRELOAD, str(tmp_path))
    assert result["ok"] is False
    by_name = {soname: (source, error) for soname, source, _, error in result["libraries"]}
    assert by_name["libcublasLt.so.12"] == ("missing", None)
    source, error = by_name["libcublas.so.12"]
    assert source == "missing" and error and "libcublas.so.12" in error  # dlopen's reason, named
    assert all(by_name[w.soname][0] == "pip" for w in CUDA_LIBRARIES if w.package == "cudnn")
    assert result["describe"].startswith("cuBLAS 12 missing (libcublas.so.12: ")


def test_the_venv_nvidia_packages_serve_ctranslate2s_dlopen_by_name() -> None:
    # torch's CUDA wheels installed nvidia-cublas-cu12: after the preload, a dlopen by soname (what
    # CTranslate2 does) gets the pip package's file, whatever LD_LIBRARY_PATH says.
    found = find_cuda_libraries()
    assert found["libcublas.so.12"].parts[-4:] == ("nvidia", "cublas", "lib", "libcublas.so.12")
    code = """
import ctypes, json
from kame_cli.backends.stt.cuda import loaded_path, preload_cuda_libraries
report = preload_cuda_libraries()
by_name = ctypes.CDLL("libcublas.so.12")
print(json.dumps(dict(ok=report.ok, sources=sorted({l.source for l in report.libraries if l.required}),
                      path=loaded_path(by_name), describe=report.describe())))
"""
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    result = _python(code, env=env)
    assert result["ok"] is True and result["sources"] == ["pip"]
    assert result["path"] == str(found["libcublas.so.12"])
    assert str(found["libcublas.so.12"].parent) in result["describe"]


_FALLBACK = """
import json, sys
import ctranslate2
from kame_cli.backends.stt.config import SttConfig
from kame_cli.backends.stt.model import load_stt_model
ctranslate2.get_cuda_device_count = lambda: 1  # the one thing no machine here has: a GPU to report
model = load_stt_model(SttConfig(device="auto", model=sys.argv[1], compute_type=sys.argv[2]))
print(json.dumps(dict(name=model.name, device=model.device, compute=model.compute_type,
                      fallback=model.fallback, describe=model.describe())))
"""


@pytest.mark.parametrize(
    ("model", "compute_type", "reason"),
    [
        ("auto", "float16", "CUDA does not answer ("),  # the driver is asked for the GPU's types
        ("bundled", "auto", "cannot be loaded on cuda ("),  # the model load itself
    ],
)
def test_when_cuda_stt_cannot_start_the_bundled_tiny_en_runs_on_cpu_and_says_why(
    model: str, compute_type: str, reason: str
) -> None:
    if model == "bundled":
        bundled = bundled_tiny_en()
        assert bundled is not None
        model = str(bundled)
    # CUDA_VISIBLE_DEVICES="" makes CTranslate2's real CUDA calls fail on any machine, GPU or not.
    env = os.environ | {"CUDA_VISIBLE_DEVICES": ""}
    result = _python(_FALLBACK, model, compute_type, env=env)
    assert (result["name"], result["device"], result["compute"]) == ("tiny.en", "cpu", "int8")
    assert reason in result["fallback"] and result["fallback"].endswith(": running tiny.en on CPU")
    assert "\n" not in result["describe"]
    assert result["describe"].startswith("tiny.en on cpu (int8): CUDA STT unavailable, ")
