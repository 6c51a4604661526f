"""The wheel set that travels to the lent GPU machine with the working tree (see docs/gpu.md).

    python scripts/gpu_wheels.py [--dest .whl] [--json]      download, trim, measure
    python scripts/gpu_wheels.py --plan [--json]             only print the plan and the command line

The plan is scripts/gpu_wheels.txt; the device image's own packages are scripts/gpu_image_packages.txt.
The device takes at most 64 MiB per call: the working tree that travels (tracked files and untracked
files git does not ignore) plus the carried wheel folder.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLAN = ROOT / "scripts" / "gpu_wheels.txt"
IMAGE = ROOT / "scripts" / "gpu_image_packages.txt"
DEST = ".whl"
SITE = "/tmp/site"
LIMIT_BYTES = 64 * 2**20
COMMAND_LIMIT = 2000
# pip matches a manylinux tag exactly: name each one the set's wheels are built for.
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28)] + [
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
]
# The device's python3 (/opt/torch/.venv) has pip; nothing can be fetched there, so --no-index.
INSTALL = (
    f"python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target {SITE} "
    f"{DEST}/*.whl"
)
# What the device tool's `run` is given as its command (carry: [".whl"], timeout_s: 600).
DEVICE_COMMAND = f"{INSTALL} && export PYTHONPATH={SITE} || exit; bash scripts/gpu_check.sh all"


def canonical(name: str) -> str:
    """PEP 503's normal form: `Pydantic_Core` and `pydantic-core` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Wheel:
    """One line of the plan: a pinned package, what of its native libraries stays, and why it travels."""

    name: str
    version: str
    why: str
    mib: float
    """Its size as built: the plan's budget adds these up without downloading."""
    keep: str | None = None


@dataclass
class Plan:
    """scripts/gpu_wheels.txt read: the wheels that travel and the requirements they may leave unmet."""

    wheels: list[Wheel] = field(default_factory=list)
    waivers: dict[tuple[str, str], str] = field(default_factory=dict)
    """(package, requirement's package) -> why that unmet requirement does not matter."""


def read_plan(path: Path = PLAN) -> Plan:
    """The plan file parsed; a malformed line is a ValueError naming the line."""
    plan = Plan()
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text, _, why = raw.partition("#")
        words = text.split()
        if not words:
            continue
        if words[0] == "waive" and len(words) == 3:
            plan.waivers[canonical(words[1]), canonical(words[2])] = why.strip()
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([A-Za-z0-9_.+!-]+)", words[0])
        options = dict(word.split("=", 1) for word in words[1:] if "=" in word)
        if match is None or len(options) != len(words) - 1 or set(options) - {"keep", "mib"}:
            raise ValueError(f"{path.name}:{number}: expected NAME==VERSION mib=SIZE [keep=GLOB] # why")
        try:
            mib = float(options["mib"])
        except (KeyError, ValueError):
            raise ValueError(
                f"{path.name}:{number}: mib=SIZE (the wheel's MiB as built) is missing"
            ) from None
        plan.wheels.append(Wheel(match[1], match[2], why.strip(), mib, options.get("keep")))
    return plan


def read_image(path: Path = IMAGE) -> dict[str, str | None]:
    """canonical name -> version (None where the image's list gives none)."""
    image: dict[str, str | None] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        text = raw.split("#", 1)[0].strip()
        if text:
            name, _, version = text.partition("==")
            image[canonical(name)] = version or None
    return image


def download(plan: Plan, dest: Path) -> None:
    """pip download of every pinned wheel for the device: CPython 3.12, manylinux x86_64, no deps."""
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
    command += ["--python-version", "3.12", "--implementation", "cp", "-d", str(dest)]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    command += [f"{w.name}=={w.version}" for w in plan.wheels]
    subprocess.run(command, check=True)


def trim(wheel: Path, keep: str) -> tuple[int, int]:
    """Rewrite `wheel` without the native libraries (*.so) that match none of `keep`'s comma-separated
    globs; RECORD follows. Returns (bytes before, bytes after)."""
    before = wheel.stat().st_size
    dropped: set[str] = set()
    trimmed = wheel.with_suffix(".trim")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(trimmed, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            name = info.filename
            if name.endswith(".so") and not any(fnmatch.fnmatch(name, glob) for glob in keep.split(",")):
                dropped.add(name)
                continue
            data = src.read(info)
            if name.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines(keepends=True)
                data = "".join(line for line in lines if line.split(",", 1)[0] not in dropped).encode()
            out.writestr(info, data)
    with zipfile.ZipFile(trimmed) as done:
        kept = [n for n in done.namelist() if n.endswith(".so")]
    unmatched = [glob for glob in keep.split(",") if not any(fnmatch.fnmatch(n, glob) for n in kept)]
    if unmatched:  # a new release renamed its libraries: keeping none would install a broken package
        trimmed.unlink()
        raise SystemExit(f"gpu_wheels: {wheel.name} has no library matching {unmatched}: update the plan")
    trimmed.replace(wheel)
    return before, wheel.stat().st_size


def travelling_tree_bytes(root: Path = ROOT) -> int:
    """Bytes of the files the device tool sends besides carried paths: tracked + untracked-not-ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        check=True,
        capture_output=True,
    ).stdout.decode()
    return sum((root / name).stat().st_size for name in set(listed.split("\0")) if (root / name).is_file())


def script_parser(doc: str | None) -> argparse.ArgumentParser:
    """A GPU script's command line: its docstring as help, and `--json` (one object on stdout)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="One JSON object on stdout (lines: stderr).")
    return parser


def main() -> int:
    parser = script_parser(__doc__)
    parser.add_argument("--dest", default=DEST, help="Folder for the wheels (git-ignored; default .whl).")
    parser.add_argument("--plan", action="store_true", help="Print the plan only; download nothing.")
    args = parser.parse_args()
    plan = read_plan()
    log = sys.stderr if args.json else sys.stdout
    tree = travelling_tree_bytes()
    report: dict[str, object] = {
        "wheels": [f"{w.name}=={w.version}" for w in plan.wheels],
        "tree_bytes": tree,
        "command": DEVICE_COMMAND,
        "limit_bytes": LIMIT_BYTES,
    }
    if not args.plan:
        dest = ROOT / args.dest
        dest.mkdir(exist_ok=True)
        for old in dest.glob("*.whl"):
            old.unlink()
        download(plan, dest)
        for w in plan.wheels:
            if w.keep:
                (path,) = dest.glob(f"{canonical(w.name).replace('-', '_')}-{w.version}-*.whl")
                before, after = trim(path, w.keep)
                print(f"trimmed {path.name}: {before / 2**20:.1f} -> {after / 2**20:.1f} MiB", file=log)
        files = sorted(dest.glob("*.whl"))
        set_bytes = sum(f.stat().st_size for f in files)
        for f in files:
            print(f"  {f.stat().st_size / 2**20:7.2f} MiB  {f.name}", file=log)
        recorded = {canonical(w.name).replace("-", "_"): w.mib for w in plan.wheels}
        for f in files:
            mib, stem = f.stat().st_size / 2**20, f.name.split("-")[0].lower()
            if abs(mib - recorded[stem]) > 0.05 + 0.05 * recorded[stem]:
                print(
                    f"gpu_wheels: {f.name} is {mib:.2f} MiB, the plan says {recorded[stem]}: update it",
                    file=log,
                )
                report["stale_sizes"] = True
        total = set_bytes + tree
        report.update(set_bytes=set_bytes, total_bytes=total, files=len(files))
        print(
            f"set {set_bytes / 2**20:.1f} MiB in {len(files)} wheels + tree {tree / 2**20:.1f} MiB = "
            f"{total / 2**20:.1f} MiB of the {LIMIT_BYTES / 2**20:.0f} MiB a call carries: "
            f"{'fits' if total <= LIMIT_BYTES else 'TOO BIG'}",
            file=log,
        )
    print(f"device command ({len(DEVICE_COMMAND)} chars, carry .whl): {DEVICE_COMMAND}", file=log)
    if args.json:
        print(json.dumps(report))
    fits = int(report.get("total_bytes", tree)) <= LIMIT_BYTES  # type: ignore[call-overload]
    return 0 if fits and not report.get("stale_sizes") else 1


if __name__ == "__main__":
    sys.exit(main())
