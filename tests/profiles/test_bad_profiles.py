"""Bad profiles: `kame profiles check` prints one line naming the file and the key, and exits 2."""

from __future__ import annotations

import tomllib

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
        "polcy: unknown key or table (known: description,",
    ),
    "wrong_type": (GOOD_LLM + 'max_tokens = "60"\n', '[llm] max_tokens: must be an integer (got "60")'),
    "out_of_range": (
        GOOD_LLM + "[policy]\nmax_restarts = 0\n",
        "[policy] max_restarts: must be >= 1 (got 0)",
    ),
    "negative_poll": (
        GOOD_LLM + "[policy]\npoll_interval_s = -0.5\n",
        "[policy] poll_interval_s: must be >= 0.01 (got -0.5)",
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
    "stt_zero_step": (GOOD_LLM + "[stt]\nstep_s = 0\n", "[stt] step_s: must be > 0 (got 0)"),
    "stt_negative_threads": (
        GOOD_LLM + "[stt]\ncpu_threads = -3\n",
        "[stt] cpu_threads: must be >= 1 (got -3)",
    ),
    "stt_unknown_device": (
        GOOD_LLM + '[stt]\ndevice = "gpu"\n',
        '[stt] device: must be one of "auto", "cuda", "cpu" (got "gpu")',
    ),
    "stt_vad_threshold_out_of_range": (
        GOOD_LLM + "[stt]\nvad_threshold = 1.0\n",
        "[stt] vad_threshold: must be < 1 (got 1.0)",
    ),
    "stt_zero_end_silence": (
        GOOD_LLM + "[stt]\nend_silence_ms = 0\n",
        "[stt] end_silence_ms: must be > 0 (got 0)",
    ),
    "frontend_negative_top_k": (
        GOOD_LLM + "[frontend]\ntop_k = -1\n",
        "[frontend] top_k: must be >= 1 (got -1)",
    ),
    # Issue 8's cases: each one line naming file and key, no traceback.
    "deep_array": (GOOD_LLM + "[llm.extra]\nx = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    "deep_inline_table": (
        GOOD_LLM + "[llm.extra]\nx = " + "{a = " * 3000 + "1" + "}" * 3000 + "\n",
        "nested too deeply",
    ),
    "nested_past_the_limit": (
        GOOD_LLM + "[llm.extra]\nx = " + "[" * 20 + "]" * 20 + "\n",
        "[llm] extra.x[0][0]",
    ),
    "huge_model_name": (
        '[llm]\nprovider = "openai"\nmodel = "' + "m" * 200_000 + '"\n',
        "model: 200000 characters: at most 65536",
    ),
    "long_model_name": (
        '[llm]\nprovider = "openai"\nmodel = "' + "m" * 300 + '"\n',
        "[llm] model: 300 characters: at most 256",
    ),
    "stt_inf_step": (GOOD_LLM + "[stt]\nstep_s = inf\n", "[stt] step_s: must be a finite number (got inf)"),
    "stt_nan_threshold": (
        GOOD_LLM + "[stt]\nvad_threshold = nan\n",
        "[stt] vad_threshold: must be a finite number (got nan)",
    ),
    "llm_negative_inf_timeout": (
        GOOD_LLM + "timeout_s = -inf\n",
        "[llm] timeout_s: must be a finite number (got -inf)",
    ),
    "huge_integer": (
        GOOD_LLM + "max_tokens = 99999999999999999999\n",
        "[llm] max_tokens: must be <= 100000",
    ),
    "zero_backoff": (
        GOOD_LLM + "[policy]\nbackoff_initial_s = 0\n",
        "[policy] backoff_initial_s: must be >= 0.1 (got 0)",
    ),
    "backoff_max_below_initial": (
        GOOD_LLM + "[policy]\nbackoff_initial_s = 4.0\nbackoff_max_s = 1.0\n",
        "[policy] backoff_max_s: must be >= backoff_initial_s (got 1 < 4)",
    ),
    "tiny_read_timeout": (
        GOOD_LLM + "read_timeout_s = 0.000001\n",
        "[llm] read_timeout_s: must be >= 0.5 (got 1e-06)",
    ),
    "newline_in_key": (
        GOOD_LLM + '"evil\\nkey" = 1\n',
        '[llm] "evil\\nkey": unknown key (known: provider,',
    ),
    "ansi_in_key": (
        GOOD_LLM + '"\\u001b[31mred" = 1\n',
        '[llm] "\\u001b[31mred": unknown key (known: provider,',
    ),
    "ansi_in_table_name": (
        GOOD_LLM + '["\\u001b[2Jwipe"]\nx = 1\n',
        '"\\u001b[2Jwipe": unknown key or table (known: description,',
    ),
    "newline_in_value": (
        GOOD_LLM + '[stt]\ndevice = "cpu\\n\\u001b[31m"\n',
        '[stt] device: must be one of "auto", "cuda", "cpu" (got "cpu\\n\\u001b[31m")',
    ),
    "policy_unknown_variant": (
        GOOD_LLM + '[policy]\nafter_finish = "sometimes"\n',
        '[policy] after_finish: must be one of "new_words", "any_change" (got "sometimes")',
    ),
    "api_base_not_a_url": (
        GOOD_LLM + 'api_base = "127.0.0.1:8080"\n',
        "[llm] api_base: must be an http:// or https:// URL",
    ),
    "frontend_seed_out_of_range": (
        GOOD_LLM + "[frontend]\nseed = 100000000000000000000000000\n",
        "[frontend] seed: must be <= 4294967295",
    ),
    "date_for_a_string": (
        GOOD_LLM + "[stt]\nmodel = 1979-05-27\n",
        "[stt] model: a date or time is no setting: quote it if it is text",
    ),
    "frontend_negative_temperature": (
        GOOD_LLM + "[frontend]\ntemperature_text = -0.1\n",
        "[frontend] temperature_text: must be >= 0 (got -0.1)",
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


SECRET = "sk-proj-abcdef1234567890"
LEAKS = {
    "key_in_file": (GOOD_LLM + f'api_key = "{SECRET}"\n', "[llm] api_key: secrets never go in profiles"),
    "key_in_api_key_env": (
        GOOD_LLM + f'api_key_env = "{SECRET}"\n',
        "[llm] api_key_env: must be the NAME of an environment variable",
    ),
    "extra_api_key": (
        GOOD_LLM + f'[llm.extra]\napi_key = "{SECRET}"\n',
        "[llm] extra.api_key: secrets never go in profiles",
    ),
    "extra_key_any_case": (
        GOOD_LLM + f'[llm.extra]\nTOKEN = "{SECRET}"\n',
        "[llm] extra.TOKEN: secrets never go in profiles",
    ),
    "extra_nested_header": (
        GOOD_LLM + f'[llm.extra.extra_headers]\nAuthorization = "Bearer {SECRET}"\n',
        "[llm] extra.extra_headers.Authorization: secrets never go in profiles",
    ),
    "extra_nested_inline": (
        GOOD_LLM + f'[llm.extra]\nextra_body = {{ options = {{ x-api-key = "{SECRET}" }} }}\n',
        "[llm] extra.extra_body.options.x-api-key: secrets never go in profiles",
    ),
    "key_in_model": (
        '[llm]\nprovider = "openai"\n' + f'model = "{SECRET}"\n',
        "[llm] model: looks like an API key (not shown): keys never go in profiles",
    ),
    "key_in_provider": (
        f'[llm]\nprovider = "{SECRET}"\nmodel = "m"\n',
        "[llm] provider: looks like an API key (not shown): keys never go in profiles",
    ),
    "extra_password_in_list": (
        GOOD_LLM + f'[llm.extra]\nhosts = [{{ url = "h", Password = "{SECRET}" }}]\n',
        "[llm] extra.hosts[0].Password: secrets never go in profiles",
    ),
}


@pytest.mark.parametrize("case", sorted(LEAKS))
def test_a_key_written_in_a_profile_is_refused_and_never_echoed(case, tmp_path, capsys) -> None:
    text, expected = LEAKS[case]
    path = tmp_path / "leaky.toml"
    path.write_text(text)
    for command in (["profiles", "check", str(path)], ["profiles", "show", str(path)]):
        assert run(command) == 2
        captured = capsys.readouterr()
        assert "abcdef1234567890" not in captured.err + captured.out
        assert captured.err.count("\n") == 1 and f"{path}: {expected}" in captured.err, captured.err
        assert "environment variable" in captured.err


def test_extra_settings_that_only_look_like_secrets_load_and_show(tmp_path, capsys) -> None:
    # Word-wise matching: these are LLM settings, not credentials.
    path = tmp_path / "extra.toml"
    path.write_text(
        GOOD_LLM + '[llm.extra]\nstop_token_ids = [2]\nprompt_cache_key = "kame"\nkeep_alive = "5m"\n'
    )
    assert run(["profiles", "show", str(path)]) == 0
    out = capsys.readouterr().out
    extra = tomllib.loads(out)["llm"]["extra"]
    assert extra["stop_token_ids"] == [2] and extra["prompt_cache_key"] == "kame"


def test_credentials_in_api_base_are_refused_without_echo(tmp_path, capsys) -> None:
    # httpx and LiteLLM never send `user:pass@` from a URL: kame refuses it at load, in one line,
    # rather than a session whose every request fails as "unreachable".
    path = tmp_path / "userinfo.toml"
    path.write_text(GOOD_LLM + 'api_base = "https://user:hunter2-pass@llm.example/v1"\n')
    for command in (["profiles", "check", str(path)], ["profiles", "show", str(path)]):
        assert run(command) == 2
        captured = capsys.readouterr()
        assert "hunter2" not in captured.out + captured.err
        assert captured.err.count("\n") == 1, captured.err
        assert f"{path}: [llm] api_base: holds credentials (user:password@)" in captured.err


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
