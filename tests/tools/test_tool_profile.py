"""`[[tools]]` in a profile: read into typed entries (folders resolved, secrets only by name), and
every mistake one line naming the entry and the key, exit 2."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from kame_cli.cli import run
from kame_cli.profiles.profile import load_profile
from kame_cli.profiles.schema import to_toml

GOOD_LLM = '[llm]\nprovider = "openai"\nmodel = "gpt-4.1-nano"\n'
ORDERS = '[[tools]]\nname = "orders"\ncommand = "python"\nargs = ["orders.py"]\nallow = ["lookup_order"]\n'


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_tools_entries_are_read_with_their_folder_and_shown_back(tmp_path: Path) -> None:
    text = (
        GOOD_LLM
        + ORDERS
        + 'env = ["ORDERS_API_KEY"]\ntimeout_s = 2.5\n'
        + '[[tools]]\nname = "web"\nurl = "http://127.0.0.1:8000/mcp"\nallow = ["search", "fetch"]\n'
    )
    profile = load_profile(str(_write(tmp_path, text)))
    orders, web = profile.tools
    assert (orders.cwd, orders.args, orders.env, orders.timeout_s) == (
        str(tmp_path.resolve()),
        ("orders.py",),
        ("ORDERS_API_KEY",),
        2.5,
    )
    assert (web.url, web.allow, web.cwd) == ("http://127.0.0.1:8000/mcp", ("search", "fetch"), None)
    # `kame profiles show` prints them back as an array of tables that reads the same.
    shown = tomllib.loads(to_toml(profile.to_tables()))
    assert [entry["name"] for entry in shown["tools"]] == ["orders", "web"]
    assert load_profile(str(_write(tmp_path, to_toml(profile.to_tables())))).tools == profile.tools


CASES = {
    "neither": ('[[tools]]\nname = "x"\nallow = ["a"]\n', "[[tools]] #1: command: give either command"),
    "both": (
        '[[tools]]\nname = "x"\ncommand = "y"\nurl = "http://127.0.0.1:1/mcp"\nallow = ["a"]\n',
        "[[tools]] #1: command: give either command",
    ),
    "empty_allow": (
        '[[tools]]\nname = "x"\ncommand = "y"\nallow = []\n',
        "[[tools]] #1: allow: name at least one tool the LLM may call",
    ),
    "bad_tool_name": (
        '[[tools]]\nname = "x"\ncommand = "y"\nallow = ["look up"]\n',
        "[[tools]] #1: allow: 'look up' is not a name",
    ),
    "secret_in_env": (
        '[[tools]]\nname = "x"\ncommand = "y"\nallow = ["a"]\nenv = ["sk-abc=1"]\n',
        "[[tools]] #1: env: must be the NAME of an environment variable",
    ),
    "unknown_key": (
        '[[tools]]\nname = "x"\ncommand = "y"\nallow = ["a"]\ntimeout = 3\n',
        "[[tools]] #1: timeout: unknown key (known: name, allow, command",
    ),
    "second_entry": (
        ORDERS + '[[tools]]\nname = "orders"\ncommand = "y"\nallow = ["b"]\n',
        "[[tools]] #2: name: 'orders' names another server too",
    ),
    "tool_twice": (
        ORDERS + '[[tools]]\nname = "other"\ncommand = "y"\nallow = ["lookup_order"]\n',
        "[[tools]] #2: allow: 'lookup_order' is offered by 'orders' too",
    ),
    "args_with_url": (
        '[[tools]]\nname = "x"\nurl = "http://127.0.0.1:1/mcp"\nargs = ["a"]\nallow = ["a"]\n',
        "[[tools]] #1: args: args, env and cwd are for a stdio server",
    ),
    "key_for_stdio": (
        '[[tools]]\nname = "x"\ncommand = "y"\nallow = ["a"]\napi_key_env = "KEY"\n',
        "[[tools]] #1: api_key_env: a bearer key is for a url server",
    ),
    "not_an_array": ('tools = "orders"\n', "tools: must be an array of tables ([[tools]])"),
}


@pytest.mark.parametrize(("text", "expected"), list(CASES.values()), ids=list(CASES))
def test_a_bad_tools_entry_is_one_line_and_exit_2(
    text: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A top-level key must come before the first table.
    path = _write(tmp_path, text + GOOD_LLM if text.startswith("tools =") else GOOD_LLM + text)
    assert run(["profiles", "check", str(path), "--no-online"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert expected in err, err


def test_profiles_check_finds_a_missing_program_or_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = GOOD_LLM + '[[tools]]\nname = "x"\ncommand = "no-such-program-kame"\nallow = ["a"]\n'
    assert run(["profiles", "check", str(_write(tmp_path, missing)), "--no-online"]) == 2
    assert "[[tools]] #1 (x): command: program 'no-such-program-kame' not found" in capsys.readouterr().err
    folder = GOOD_LLM + ORDERS + 'cwd = "gone"\n'
    assert run(["profiles", "check", str(_write(tmp_path, folder)), "--no-online"]) == 2
    assert "[[tools]] #1 (orders): cwd: folder" in capsys.readouterr().err


def test_profiles_check_online_starts_each_server(tmp_path: Path) -> None:
    from kame_cli.backends.tools.check import check_tools
    from kame_cli.errors import ProfileError

    crashes = (
        GOOD_LLM + '[[tools]]\nname = "x"\ncommand = "python"\nargs = ["-c", "print(1/0)"]\nallow = ["a"]\n'
    )
    profile = load_profile(str(_write(tmp_path, crashes)))
    with pytest.raises(ProfileError, match=r"\[\[tools\]\] x did not start: .*ZeroDivisionError"):
        check_tools(profile.shown_path, profile.tools, online=True)
