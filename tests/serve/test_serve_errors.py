"""`kame serve` refuses bad input in one line, exit 2, before it loads or binds anything."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.session.conftest import run_kame


def _refused(*args: str) -> str:
    done = run_kame("serve", "--model", "random:tiny", "--profile", "offline", *args, timeout=60)
    assert done.returncode == 2, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.strip()]
    assert line.startswith("kame: error: ") and "Traceback" not in done.stderr
    return line


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--host", "0.0.0.0", "--token-env", "KAME_NO_SUCH_TOKEN_VAR"), "set an access token"),
        (("--ssl-cert", "cert.pem"), "--ssl-cert and --ssl-key go together"),
        (("--max-queue", "-1"), "--max-queue must be >= 0"),
        (("--quantize", "int4"), "--quantize int4"),
    ],
)
def test_bad_options_are_one_line(args: tuple[str, ...], says: str) -> None:
    assert says in _refused(*args)


def test_a_log_dir_that_is_a_file_and_a_missing_profile_are_one_line(tmp_path: Path) -> None:
    afile = tmp_path / "file"
    afile.write_text("x")
    assert "not a folder" in _refused("--log-dir", str(afile))
    done = run_kame("serve", "--profile", str(tmp_path / "nope.toml"), timeout=60)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1


def test_a_port_in_use_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert "choose another --port" in _refused("--port", str(port))
