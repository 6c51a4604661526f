"""Bad profiles: `kame profiles check` prints one line naming the file and the key, and exits 2."""

from __future__ import annotations

import pytest

from kame_cli.cli import run

GOOD_LLM = '[llm]\nprovider = "openai"\nmodel = "gpt-4.1-nano"\n'

# (profile text, what the one-line error must say after "kame: error: <file>: ")
CASES = {
    "syntax_error": ('[llm\nprovider = "openai"\n', "invalid TOML: "),
    "unknown_key": (
        GOOD_LLM + "temprature = 0.5\n",
        "[llm] temprature: unknown key (known: provider, model,",
    ),
    "unknown_table": (
        GOOD_LLM + "[polcy]\nmax_restarts = 2\n",
        "unknown key or table 'polcy' (known: description,",
    ),
    "wrong_type": (GOOD_LLM + 'max_tokens = "60"\n', '[llm] max_tokens: must be an integer (got "60")'),
    "out_of_range": (
        GOOD_LLM + "[policy]\nmax_restarts = 0\n",
        "[policy] max_restarts: must be >= 1 (got 0)",
    ),
    "negative_poll": (
        GOOD_LLM + "[policy]\npoll_interval_s = -0.5\n",
        "[policy] poll_interval_s: must be > 0 (got -0.5)",
    ),
    "missing_env_var": (
        GOOD_LLM + 'api_key_env = "KAME_TEST_NEVER_SET_VARIABLE"\n',
        "[llm] api_key_env: environment variable KAME_TEST_NEVER_SET_VARIABLE is not set: export",
    ),
    "unknown_provider": (
        '[llm]\nprovider = "openia"\nmodel = "gpt-4.1"\n',
        '[llm] provider: unknown value "openia" (known: anthropic,',
    ),
    "missing_gguf": (
        '[llm]\nprovider = "openai"\nmodel = "local"\n[llm.server]\ngguf = "no/such/model.gguf"\n',
        "[llm.server] gguf: file {dir}/no/such/model.gguf does not exist",
    ),
    "empty_prompt": (GOOD_LLM + '[prompt]\nsystem = "  "\n', "[prompt] system: must not be empty"),
    "template_without_conversation": (
        GOOD_LLM + '[prompt]\nuser_template = "Reply to {user}"\n',
        "[prompt] user_template: bad template (KeyError: 'user'); only {conversation} is available",
    ),
    "missing_required_key": ('[llm]\nprovider = "openai"\n', "[llm] model: missing (this key is required)"),
    "no_llm_table": ('description = "x"\n', "[llm] provider: missing (this key is required)"),
    "stt_wrong_type": (
        GOOD_LLM + '[stt]\nbeam_size = "five"\n',
        '[stt] beam_size: must be an integer (got "five")',
    ),
    "frontend_bad_choice": (
        GOOD_LLM + '[frontend]\ndevice = "tpu"\n',
        '[frontend] device: must be one of "auto", "cuda", "cpu" (got "tpu")',
    ),
    "nested_wrong_type": (
        GOOD_LLM + "[llm.server]\nthreads = 0\n",
        "[llm] server.threads: must be >= 1 (got 0)",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_profile_is_one_line_and_exit_2(case, tmp_path, capsys) -> None:
    text, expected = CASES[case]
    path = tmp_path / f"{case}.toml"
    path.write_text(text)
    assert run(["profiles", "check", str(path), "--no-online"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"kame: error: {path}: "), err
    assert expected.replace("{dir}", str(tmp_path)) in err, err


@pytest.mark.parametrize(
    "text",
    [
        GOOD_LLM + 'api_key = "sk-proj-abcdef1234567890"\n',
        '[llm]\nprovider = "openai"\nmodel = "gpt-4.1"\napi_key_env = "sk-proj-abcdef1234567890"\n',
    ],
    ids=["key_in_file", "key_in_api_key_env"],
)
def test_a_key_written_in_a_profile_is_refused_and_never_echoed(text, tmp_path, capsys) -> None:
    path = tmp_path / "leaky.toml"
    path.write_text(text)
    assert run(["profiles", "check", str(path)]) == 2
    captured = capsys.readouterr()
    assert "abcdef1234567890" not in captured.err + captured.out
    assert "environment variable" in captured.err and captured.err.count("\n") == 1


def test_missing_profile_name_and_file(tmp_path, capsys) -> None:
    assert run(["profiles", "check", "no-such-profile"]) == 2
    assert "no profile named 'no-such-profile'" in capsys.readouterr().err
    assert run(["profiles", "show", str(tmp_path / "gone.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_set_env_var_passes_without_showing_its_value(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("KAME_TEST_KEY_VAR", "value-that-must-not-show")
    path = tmp_path / "keyed.toml"
    path.write_text(GOOD_LLM + 'api_key_env = "KAME_TEST_KEY_VAR"\n')
    assert run(["profiles", "check", str(path)]) == 0
    captured = capsys.readouterr()
    assert "ok: KAME_TEST_KEY_VAR is set" in captured.out
    assert "value-that-must-not-show" not in captured.out + captured.err
    assert run(["profiles", "show", str(path)]) == 0
    assert "value-that-must-not-show" not in capsys.readouterr().out
