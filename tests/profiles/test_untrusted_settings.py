"""Profiles trust nothing they read: an unreadable user folder, URLs that do not parse."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kame_cli.cli import run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def unreadable_config_dir(tmp_path: Path) -> Iterator[Path]:
    """A KAME_CONFIG_DIR whose `profiles` folder its owner cannot read (mode 000)."""
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "mine.toml").write_text('[llm]\nprovider = "openai"\nmodel = "m"\n')
    (tmp_path / "profiles").chmod(0)
    try:
        yield tmp_path
    finally:
        (tmp_path / "profiles").chmod(0o755)


def _kame_as_user(args: list[str], config_dir: Path) -> subprocess.CompletedProcess[str]:
    # Root reads any folder through two capabilities: the command runs without them (setpriv is
    # util-linux's, on every Debian), still as root, so it reads the checkout as before.
    drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    prefix = drop if os.geteuid() == 0 else []
    env = {**os.environ, "KAME_CONFIG_DIR": str(config_dir)}
    return subprocess.run(
        [*prefix, sys.executable, "-m", "kame_cli.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_unreadable_user_folder_is_one_line_and_shipped_profiles_still_resolve(
    unreadable_config_dir: Path,
) -> None:
    folder = unreadable_config_dir / "profiles"
    for args in (["profiles", "show", "offline"], ["profiles", "list"]):
        done = _kame_as_user(args, unreadable_config_dir)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        assert done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith(f"kame: warning: user profiles folder {folder} cannot be read")
        assert "offline" in done.stdout
    done = _kame_as_user(["profiles", "show", "mine"], unreadable_config_dir)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f'no shipped profile named "mine", and the user profiles folder {folder}' in done.stderr


BASE = '[llm]\nprovider = "openai"\nmodel = "m"\n'
BAD_URLS = {
    "http://[::1": "unclosed IPv6 bracket",
    "http://[::1/v1": "unclosed IPv6 bracket",
    "http://[nonsense]:8080/v1": "bad IPv6 address",
    "http://127.0.0.1:99999/v1": "port out of range",
    "http://127.0.0.1:80a/v1": "port out of range",
    "http://:8080/v1": "no host",
}


@pytest.mark.parametrize("url", sorted(BAD_URLS))
def test_an_api_base_that_does_not_parse_is_refused_when_the_profile_loads(url, tmp_path, capsys) -> None:
    path = tmp_path / "bad-url.toml"
    path.write_text(BASE + f'api_base = "{url}"\n')
    for command in (["profiles", "check", str(path)], ["profiles", "check", str(path), "--no-online"]):
        assert run(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert err.startswith(f"kame: error: {path}: [llm] api_base: not a valid URL"), err


def test_good_urls_still_load(tmp_path, capsys) -> None:
    for url in ("http://[::1]:8080/v1", "https://api.example.com/v1", "http://localhost:11434"):
        path = tmp_path / "good-url.toml"
        path.write_text(BASE + f'api_base = "{url}"\n')
        assert run(["profiles", "show", str(path)]) == 0
        assert f'api_base = "{url}"' in capsys.readouterr().out


def test_talk_with_an_unparsable_api_base_stops_before_anything_starts(tmp_path, capsys) -> None:
    # It used to start a session whose every request failed as "server error 500".
    path = tmp_path / "bad-url.toml"
    path.write_text(BASE + 'api_base = "http://[::1"\n')
    log_dir = tmp_path / "log"
    code = run(
        [
            "talk",
            "--profile",
            str(path),
            "--no-ui",
            "--input",
            str(tmp_path / "q.wav"),
            "--log-dir",
            str(log_dir),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"{path}: [llm] api_base: not a valid URL (Invalid IPv6 URL)" in err
    assert not log_dir.exists()
