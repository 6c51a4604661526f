"""The GPU wheel set's plan (scripts/gpu_wheels.txt) holds without downloading anything: what travels,
why, within the device's 64 MiB a call, installed by a command line the device tool takes."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"


def _load(name: str) -> ModuleType:
    sys.path.insert(0, str(SCRIPTS))  # gpu_complete imports gpu_wheels from beside it
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gw = _load("gpu_wheels")


def test_each_wheel_is_pinned_once_with_a_reason() -> None:
    plan = gw.read_plan()
    names = [gw.canonical(w.name) for w in plan.wheels]
    assert len(names) == len(set(names))
    assert all(w.version and w.why and w.mib > 0 for w in plan.wheels)
    assert "moshi" in names and "bitsandbytes" in names


def test_a_package_the_image_has_travels_only_for_another_version() -> None:
    plan, image = gw.read_plan(), gw.read_image()
    for wheel in plan.wheels:
        name = gw.canonical(wheel.name)
        if name in image:
            assert "image" in wheel.why and image[name] != wheel.version, wheel


def test_the_image_list_is_the_machine_the_check_is_written_for() -> None:
    image = gw.read_image()
    assert image["torch"] == "2.11.0"
    assert (image["huggingface-hub"] or "").startswith("1.")
    assert len(image) > 150 and "packaging" in image


def test_waivers_are_for_carried_packages_and_say_why() -> None:
    plan = gw.read_plan()
    carried = {gw.canonical(w.name) for w in plan.wheels}
    assert plan.waivers
    for (owner, needed), why in plan.waivers.items():
        assert owner in carried and needed not in carried and why


def test_the_device_command_installs_offline_and_fits_the_tool() -> None:
    command = gw.DEVICE_COMMAND
    assert len(command) <= gw.COMMAND_LIMIT
    for part in (
        "--no-index",
        "--no-deps",
        f"--target {gw.SITE}",
        f"{gw.DEST}/*.whl",
        "scripts/gpu_check.sh",
    ):
        assert part in command
    assert f"/{gw.DEST}/" in (ROOT / ".gitignore").read_text(encoding="utf-8").split()


def test_the_set_and_the_travelling_tree_fit_one_call() -> None:
    set_bytes = sum(w.mib for w in gw.read_plan().wheels) * 2**20
    tree = gw.travelling_tree_bytes()
    assert 0 < tree < set_bytes + tree <= gw.LIMIT_BYTES


def test_a_malformed_plan_line_names_the_line(tmp_path: Path) -> None:
    plan = tmp_path / "plan.txt"
    plan.write_text("# comment\nmoshi>=0.2 mib=0.1  # not pinned\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"plan.txt:2: expected NAME==VERSION"):
        gw.read_plan(plan)
    plan.write_text("moshi==0.2.13  # no size\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"plan.txt:1: mib=SIZE"):
        gw.read_plan(plan)


def test_trim_keeps_only_the_named_libraries_and_their_record_lines(tmp_path: Path) -> None:
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    names = ["pkg/__init__.py", "pkg/lib_cpu.so", "pkg/lib_cuda130.so", "pkg/lib_cuda128.so"]
    with zipfile.ZipFile(wheel, "w") as out:
        for name in names:
            out.writestr(name, b"x" * 5000)
        out.writestr("pkg-1.0.dist-info/RECORD", "".join(f"{n},sha256=x,5000\n" for n in names))
    before, after = gw.trim(wheel, "*_cuda130.so,*_cpu.so")
    assert after < before
    with zipfile.ZipFile(wheel) as done:
        assert sorted(done.namelist()) == sorted([*names[:3], "pkg-1.0.dist-info/RECORD"])
        assert "lib_cuda128" not in done.read("pkg-1.0.dist-info/RECORD").decode()
    with pytest.raises(SystemExit, match="cuda999"):
        gw.trim(wheel, "*_cuda999.so")


def test_completeness_names_a_missing_requirement_and_fails(tmp_path: Path) -> None:
    info = tmp_path / "site" / "carried-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: carried\nVersion: 1.0\n"
        "Requires-Dist: no-such-package-kame>=1\nRequires-Dist: packaging\n"
        'Requires-Dist: pytest; extra == "dev"\n',
        encoding="utf-8",
    )
    script = [sys.executable, str(SCRIPTS / "gpu_complete.py"), str(tmp_path / "site"), "--no-imports"]
    result = subprocess.run(script, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert "MISSING  carried 1.0 needs no-such-package-kame>=1: absent" in result.stdout
    assert "INCOMPLETE: 1 distributions, 2 requirements: 1 met" in result.stdout
    gone = subprocess.run(
        [*script[:2], str(tmp_path / "nowhere")], capture_output=True, text=True, check=False
    )
    assert gone.returncode == 2 and gone.stderr.count("\n") == 1 and "no folder" in gone.stderr


# Imported by a library only when installed, and needed by no step of the check.
OPTIONAL = {"pysocks": "requests loads urllib3's SOCKS proxy support when PySocks is there"}

_TRACE = """
import os, sys
def _dump(*_):
    with open(os.path.join({out!r}, str(os.getpid())), "w") as f:
        f.write("\\n".join(sorted({{m.split(".")[0] for m in list(sys.modules)}})))
import atexit; atexit.register(_dump)
_exit = os._exit
def _traced_exit(code):
    _dump(); _exit(code)
os._exit = _traced_exit
"""


def test_everything_the_check_imports_is_in_the_image_or_the_set(tmp_path: Path) -> None:
    """The check's own steps, on CPU with random:tiny, in this environment: every distribution any of
    its processes imported must be one the device image lists, one the set carries, or kame."""
    from importlib.metadata import packages_distributions

    hook, traces = tmp_path / "hook", tmp_path / "traces"
    hook.mkdir()
    traces.mkdir()
    (hook / "sitecustomize.py").write_text(_TRACE.format(out=str(traces)), encoding="utf-8")
    env = os.environ | {"PYTHONPATH": f"{hook}{os.pathsep}{ROOT}", "NO_TORCH_COMPILE": "1"}
    probe = [sys.executable, str(SCRIPTS / "gpu_probe.py")]
    for args in (
        ["frontend", "--model", "random:tiny", "--device", "cpu", "--steps", "8", "--rounds", "1"],
        ["paced", "--model", "random:tiny", "--device", "cpu", "--seconds", "2"],
    ):
        done = subprocess.run(
            [*probe, *args], env=env, capture_output=True, text=True, timeout=240, check=False
        )
        assert done.returncode == 0, done.stderr[-2000:]
    modules = {m for trace in traces.iterdir() for m in trace.read_text(encoding="utf-8").split()}
    assert len(list(traces.iterdir())) >= 3  # the paced session's front-end ran in its own process
    owners = packages_distributions()
    imported = {gw.canonical(d) for m in modules for d in owners.get(m, [])}
    allowed = set(gw.read_image()) | {gw.canonical(w.name) for w in gw.read_plan().wheels} | {"kame-cli"}
    allowed |= set(OPTIONAL)
    assert "moshi" in imported and "soundfile" in imported
    assert imported <= allowed, sorted(imported - allowed)


def test_the_docs_give_the_command_as_the_script_builds_it() -> None:
    assert gw.DEVICE_COMMAND in (ROOT / "docs" / "gpu.md").read_text(encoding="utf-8")
