"""The memory plan's per-session figures for `kame serve`: what each batched session adds, and how
many fit on a card once the shared parts are in."""

from __future__ import annotations

from kame_cli.doctor.memory import (
    SESSION_ALLOWANCE,
    STT_SESSION_ALLOWANCE,
    FrontendMemory,
    frontend_memory,
    memory_check,
)
from kame_cli.engine import builtin
from kame_cli.engine.config import FrontendConfig

GIB = 2**30


def test_a_7b_sessions_cost_is_its_kv_cache_rows_mimi_state_and_allowances() -> None:
    plan, plan_int8 = frontend_memory(FrontendConfig(model="random:7b"), "cuda")
    lm = builtin.full_lm_config()
    # Keys and values for the 3000-step context in each of the 32 temporal layers, in bf16.
    assert plan.kv_cache == 2 * lm["context"] * lm["dim"] * lm["num_layers"] * 2 == 1_572_864_000
    # Mimi's encoder and decoder transformers (8 layers each, width 512, context 250) in fp32.
    assert plan.mimi_state == 16 * 2 * 512 * 250 * 4
    assert plan.per_session == plan.kv_cache + plan.mimi_state + SESSION_ALLOWANCE + STT_SESSION_ALLOWANCE
    assert plan_int8.per_session == plan.per_session  # int8 shrinks the weights, not the caches


def test_sessions_fitting_is_what_remains_after_the_shared_parts_over_one_sessions_cost() -> None:
    front = FrontendMemory(weights=15 * GIB, kv_cache=GIB, mimi=GIB // 4, allowance=GIB // 2, int8=False)
    per = front.per_session
    free = 60 * GIB
    beside = 2 * GIB  # the STT model
    expected = (free - (15 * GIB + GIB // 4 + GIB // 2 + beside)) // per
    assert front.sessions_fitting(free, beside) == expected and expected == 38
    assert front.sessions_fitting(10 * GIB) == 0  # not even the weights fit


def test_the_memory_check_on_a_card_suggests_max_sessions() -> None:
    front, _ = frontend_memory(FrontendConfig(model="random:7b"), "cuda")
    stt = GIB
    check = memory_check("cuda", 78 * GIB, 80 * GIB, front, None, stt, "cuda", None)
    assert check.details is not None
    suggested = check.details["suggested_max_sessions"]
    assert suggested == front.sessions_fitting(78 * GIB, stt)
    assert isinstance(suggested, int) and 16 <= suggested <= 40  # an H100 holds the 16
    assert f"kame serve: ~{suggested} sessions" in check.summary and "(estimate)" in check.summary
    assert check.details["per_session_bytes"] == front.per_session
    # On a CPU the plan has the figures but does not suggest a batch: compute bounds it there.
    on_cpu = memory_check("cpu", 64 * GIB, 64 * GIB, front, None, stt, "cpu", None)
    assert "kame serve" not in on_cpu.summary
