"""CUDA for the STT: make CTranslate2 find cuBLAS/cuDNN from the `nvidia-*` pip packages torch installs.

CTranslate2 opens `libcublas.so.12` by name (dlopen) at its first GPU matrix product and never looks
in site-packages, so on a machine with only a driver it fails although torch's CUDA wheels brought
exactly that library (`nvidia/cublas/lib`). Loading each library once *by path* with RTLD_GLOBAL puts
its soname into the process: every later dlopen by that name gets the loaded copy, whatever
LD_LIBRARY_PATH says. Dependencies go first (cublasLt before cublas, cudnn_graph before the other
cuDNN parts), so each load finds what it needs already there.
"""

from __future__ import annotations

import contextlib
import ctypes
import site
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from kame_cli.errors import KameError

if TYPE_CHECKING:
    import ctranslate2


@dataclass(frozen=True, slots=True)
class _Wanted:
    package: str
    """The folder under `site-packages/nvidia/` of the pip package that ships it."""
    soname: str
    required: bool
    """cuBLAS is what CTranslate2 4.x opens; cuDNN is preloaded too when present (other builds use it)."""


CUDA_LIBRARIES: tuple[_Wanted, ...] = (
    _Wanted("cublas", "libcublasLt.so.12", True),
    _Wanted("cublas", "libcublas.so.12", True),
    _Wanted("cudnn", "libcudnn_graph.so.9", False),
    _Wanted("cudnn", "libcudnn_ops.so.9", False),
    _Wanted("cudnn", "libcudnn_cnn.so.9", False),
    _Wanted("cudnn", "libcudnn_adv.so.9", False),
    _Wanted("cudnn", "libcudnn_heuristic.so.9", False),
    _Wanted("cudnn", "libcudnn_engines_precompiled.so.9", False),
    _Wanted("cudnn", "libcudnn_engines_runtime_compiled.so.9", False),
    _Wanted("cudnn", "libcudnn.so.9", False),
)
"""In load order: every library after the ones it links against."""

Source = Literal["pip", "system", "missing"]


class CudaSttUnavailableError(KameError):
    """CUDA STT cannot start here (libraries, GPU, memory); the caller runs the STT on CPU instead."""


@dataclass(frozen=True, slots=True)
class CudaLibrary:
    """Where one library came from, or why it could not be loaded."""

    soname: str
    source: Source
    path: str | None
    required: bool
    error: str | None = None
    """Why a file that was found could not be loaded (not an ELF, wrong architecture, ...)."""

    @property
    def loaded(self) -> bool:
        return self.source != "missing"


@dataclass(frozen=True, slots=True)
class CudaLibraryReport:
    """The outcome of one preload: a line per library, in load order."""

    libraries: tuple[CudaLibrary, ...]

    @property
    def ok(self) -> bool:
        """True when every library CTranslate2 needs is loaded."""
        return all(lib.loaded for lib in self.libraries if lib.required)

    @property
    def missing(self) -> list[str]:
        return [lib.soname for lib in self.libraries if not lib.loaded]

    def folders(self, prefix: str) -> list[str]:
        """The folders the libraries whose names start with `prefix` were loaded from."""
        seen: list[str] = []
        for lib in self.libraries:
            if lib.soname.startswith(prefix) and lib.path is not None:
                folder = str(Path(lib.path).parent)
                if folder not in seen:
                    seen.append(folder)
        return seen

    def describe(self) -> str:
        """One line: where cuBLAS and cuDNN come from, or what is missing."""
        parts = []
        for name, prefix in (("cuBLAS 12", "libcublas"), ("cuDNN 9", "libcudnn")):
            wanted = [lib for lib in self.libraries if lib.soname.startswith(prefix)]
            if wanted and all(lib.loaded for lib in wanted):
                parts.append(f"{name} from {', '.join(self.folders(prefix))}")
            else:
                absent = [lib for lib in wanted if not lib.loaded]
                errors = [f"{lib.soname}: {lib.error}" for lib in absent if lib.error]
                names = ", ".join(lib.soname for lib in absent)
                parts.append(f"{name} missing ({'; '.join(errors) or names})")
        return "; ".join(parts)


def site_roots() -> list[Path]:
    """Folders that may hold `nvidia/<package>/lib`: this interpreter's site-packages and sys.path."""
    candidates: list[str] = []
    with contextlib.suppress(AttributeError):  # virtualenv's old `site` module lacks it
        candidates.extend(site.getsitepackages())
    candidates.append(site.getusersitepackages())
    candidates.extend(sys.path)
    roots: list[Path] = []
    for entry in candidates:
        path = Path(entry or ".").resolve()
        if (path / "nvidia").is_dir() and path not in roots:
            roots.append(path)
    return roots


def find_cuda_libraries(roots: Iterable[Path] | None = None) -> dict[str, Path]:
    """soname -> file of each wanted library found in the pip packages' layout (nothing is loaded)."""
    found: dict[str, Path] = {}
    for root in site_roots() if roots is None else roots:
        for wanted in CUDA_LIBRARIES:
            path = Path(root) / "nvidia" / wanted.package / "lib" / wanted.soname
            if wanted.soname not in found and path.is_file():
                found[wanted.soname] = path
    return found


_default_report: CudaLibraryReport | None = None


def preload_cuda_libraries(roots: Sequence[Path] | None = None, *, system: bool = True) -> CudaLibraryReport:
    """Load cuBLAS/cuDNN by path from the pip packages (else, with `system`, by name from the library
    path), in dependency order, RTLD_GLOBAL. Idempotent; with the default roots the outcome is
    remembered per process."""
    global _default_report
    if roots is None and system and _default_report is not None:
        return _default_report
    files = find_cuda_libraries(roots)
    libraries = tuple(_load(wanted, files.get(wanted.soname), system) for wanted in CUDA_LIBRARIES)
    report = CudaLibraryReport(libraries)
    if roots is None and system:
        _default_report = report
    return report


_handles: list[ctypes.CDLL] = []
"""Kept for the process's lifetime: the libraries must stay loaded for CTranslate2."""


def _load(wanted: _Wanted, path: Path | None, system: bool) -> CudaLibrary:
    error = None
    if path is not None:
        try:
            _handles.append(ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL))
            return CudaLibrary(wanted.soname, "pip", str(path), wanted.required)
        except OSError as err:  # dlopen's message: not an ELF file, wrong class, missing dependency
            error = str(err).splitlines()[0] if str(err) else type(err).__name__
    if not system:
        return CudaLibrary(wanted.soname, "missing", None, wanted.required, error)
    try:
        # A CUDA toolkit on the library path, or a copy torch already loaded.
        handle = ctypes.CDLL(wanted.soname, mode=ctypes.RTLD_GLOBAL)
    except OSError:
        return CudaLibrary(wanted.soname, "missing", None, wanted.required, error)
    _handles.append(handle)
    return CudaLibrary(wanted.soname, "system", loaded_path(handle), wanted.required)


class _LinkMap(ctypes.Structure):
    _fields_ = [("l_addr", ctypes.c_void_p), ("l_name", ctypes.c_char_p)]


_RTLD_DI_LINKMAP = 2


def loaded_path(handle: ctypes.CDLL) -> str | None:
    """The file a dlopen handle refers to (glibc's dlinfo), or None where that cannot be asked."""
    for libname in ("libc.so.6", "libdl.so.2"):
        try:
            dlinfo = ctypes.CDLL(libname).dlinfo
        except (OSError, AttributeError):
            continue
        link_map = ctypes.POINTER(_LinkMap)()
        if dlinfo(ctypes.c_void_p(handle._handle), _RTLD_DI_LINKMAP, ctypes.byref(link_map)) != 0:
            return None
        name = link_map.contents.l_name
        return name.decode(errors="replace") if name else None
    return None


def require_cuda_libraries() -> CudaLibraryReport:
    """Preload, and raise CudaSttUnavailableError when cuBLAS is nowhere to be found."""
    report = preload_cuda_libraries()
    if not report.ok:
        raise CudaSttUnavailableError(
            f"{report.describe()}: pip install nvidia-cublas-cu12 (torch's CUDA wheels bring it) "
            "or install the CUDA 12 toolkit"
        )
    return report


def warm_up(whisper: ctranslate2.models.Whisper, n_mels: int) -> None:
    """One encode of 30 s of silence: the first GEMM is where missing cuBLAS or memory shows."""
    import ctranslate2
    import numpy as np

    features = ctranslate2.StorageView.from_array(np.zeros((1, n_mels, 3000), dtype=np.float32))
    try:
        whisper.encode(features, to_cpu=True)
    except (RuntimeError, ValueError, OSError) as err:  # CTranslate2 raises RuntimeError for CUDA faults
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CudaSttUnavailableError(f"the first encode on CUDA failed ({first[:200]})") from err
