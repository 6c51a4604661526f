"""One measured session: `kame talk` on a file in its own process, followed through its log.

The session runs exactly as a user's `kame talk --input FILE --log-dir DIR --no-ui` (a child
process, so nothing of the bench shares its interpreter). The bench owns the profile's local LLM
server, when it has one, so that the cascaded client can reach the very server the oracle uses:
the child gets the same profile with `api_base` pointing at it instead of `[llm.server]`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kame_cli.errors import ConfigError
from kame_cli.profiles import Profile
from kame_cli.session.logfile import decode_line
from kame_cli.tandem.cascade import CascadeClient, CascadeResult, write_cascades

_POLL_S = 0.02


@dataclass(frozen=True)
class MeasuredRun:
    """A finished session: its log folder and the cascade's timings on its finals."""

    profile: Profile
    log_dir: Path
    cascades: list[CascadeResult]
    exit_code: int
    message: str
    """The session's last line on stderr when it failed ("" when it ended normally)."""
    fast: bool


class LogFollower:
    """Reads the lines a growing `events.jsonl` gains, whole lines only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._rest = b""

    def read(self) -> list[str]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        self._offset += len(data)
        lines = (self._rest + data).split(b"\n")
        self._rest = lines.pop()
        return [line.decode("utf-8") for line in lines]


def session_profile(profile: Profile, api_base: str | None, directory: Path) -> str:
    """The profile the session child gets: the same one, served by the bench's LLM server if any."""
    if profile.llm.server is None:
        return str(profile.path)
    import tomli_w

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    data = tomllib.loads(profile.path.read_text(encoding="utf-8"))
    llm = data.setdefault("llm", {})
    llm.pop("server", None)
    llm["api_base"] = api_base
    path = directory / f"{profile.name}.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return str(path)


@contextlib.contextmanager
def llm_backend(profile: Profile) -> Iterator[str | None]:
    """The profile's LLM server, started here when the profile runs one (`prepare_llm_backend`)."""
    from kame_cli.profiles import check_environment, prepare_llm_backend

    check_environment(profile)
    with prepare_llm_backend(profile) as api_base:
        yield api_base


def run_measured(
    profile: Profile,
    input_wav: Path,
    log_dir: Path,
    *,
    model: str | None = None,
    fast: bool = False,
    progress: Callable[[str], None] = lambda line: None,
) -> MeasuredRun:
    """Run one session on `input_wav` with `profile`, timing the cascade on its finals as it runs."""
    if (log_dir / "events.jsonl").exists():
        raise ConfigError(f"{log_dir}: already holds a session log; give an empty or new folder")
    with tempfile.TemporaryDirectory(prefix="kame-tandem-") as tmp, llm_backend(profile) as api_base:
        spec = session_profile(profile, api_base, Path(tmp))
        args = ["talk", "--profile", spec, "--input", str(input_wav), "--log-dir", str(log_dir), "--no-ui"]
        if model is not None:
            args += ["--model", model]
        if fast:
            args.append("--fast")
        err_path = Path(tmp) / "stderr.txt"
        with open(os.devnull, "w") as devnull, open(err_path, "w") as err:
            child = subprocess.Popen(
                [sys.executable, "-m", "kame_cli.cli", *args], stdout=devnull, stderr=err, text=True
            )
            try:
                cascade = CascadeClient(profile, api_base)
                cascade.start()
                follower = LogFollower(log_dir / "events.jsonl")
                while child.poll() is None:
                    _follow(follower, cascade)
                    time.sleep(_POLL_S)
                _follow(follower, cascade)
                progress(f"  session ended ({child.returncode}); last cascade requests...")
                results = cascade.finish()
                if (log_dir / "events.jsonl").is_file():
                    write_cascades(log_dir, results)
            finally:
                if child.poll() is None:
                    child.terminate()  # Ctrl-C in the bench: the session ends cleanly on SIGTERM
                    child.wait(5.0)
        lines = [ln for ln in err_path.read_text(encoding="utf-8", errors="replace").splitlines() if ln]
    message = "" if child.returncode == 0 else (lines[-1] if lines else f"exit code {child.returncode}")
    return MeasuredRun(profile, log_dir, results, child.returncode, message, fast)


def _follow(follower: LogFollower, cascade: CascadeClient) -> None:
    for line in follower.read():
        event = decode_line(line) if line.strip() else None
        if event is not None:
            cascade.observe(event)
    cascade.poll()
