"""Settings every test runs under (no torch.compile warm-up, no hub or price-list downloads), and
how the suite is shared out between its three pytest-xdist workers."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

# Bytecode is cached in the checkout, as Python does by default, also where the environment turns it
# off: otherwise every `kame` process the suite starts compiles kame's modules again and each worker
# rewrites every test module (about a tenth of the suite's CPU-seconds).
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
# Set before any test imports moshi, huggingface_hub or litellm.
os.environ.setdefault("NO_TORCH_COMPILE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("OMP_NUM_THREADS", "1")

REAL_TIME = (
    "tests/tandem/test_bench_tandem.py::",
    "tests/tandem/test_plot.py::",
    "tests/tandem/test_replay.py::",
    "tests/session/test_talk_backend_outage.py::",
    "tests/session/test_talk_file.py::",
    "tests/session/test_talk_interrupt.py::",
    "tests/session/test_talk_lag.py::",
    "tests/session/test_talk_panel.py::",
    "tests/session/test_talk_processes.py::",
    "tests/session/test_talk_errors.py::test_api_key_comes_from_the_named_variable",
)
"""Modules (and one test: an answer from a server that wants a key) whose sessions run at the pace
of real time and assert what happens within it (an answer reaching the voice in the gap, an exit
within a second, a restart): one worker runs them one after another, started first, so that no two
such sessions share the two cores; the other workers run at a lower priority meanwhile
(`BESIDE_REAL_TIME_NICENESS`). They also share costly session- and module-wide fixtures (the
recorded `kame bench tandem` run, a paced session)."""
SPREAD = ("tests/session/",)
"""The other session modules: each test starts its own `kame talk` and shares no costly fixture, so
it goes to whichever worker is free."""

SHARED_SERVER = (
    "tests/serve/test_admission.py",
    "tests/serve/test_clients.py",
    "tests/serve/test_hostile.py",
    "tests/serve/test_web.py",
)
"""The modules that use tests/serve's package-wide `kame serve` (`server`): on one worker, it starts
once (a front-end and a loaded back-end per free slot) instead of once per worker."""


COSTLY = (
    "tests/session/",
    "tests/serve/",
    "tests/eval/test_eval_e2e.py",
    "tests/test_log_fuzz.py",
    "tests/backends/stt/",
    "tests/audio_io/",
    "tests/doctor/",
    "tests/backends/oracle/",
    "tests/knowledge/",  # a paced kame talk, the oracle bench, LiteLLM through the producer
    "tests/engine/",
    "tests/bench/",
    "tests/tools/",
    "tests/scripts/",
    "tests/eval/",
    "tests/test_hostile_input.py",
    "tests/test_readme.py",
)
"""After the real-time group, the costliest folders and modules first (a module of tens of seconds
left among the quick ones runs last, alone): the other workers work through them while the real-time
group runs, and the quick tests left at the end even out the workers' finish."""


def _real_time(nodeid: str) -> bool:
    return nodeid.startswith(REAL_TIME)


def _group(nodeid: str) -> str | None:
    """The xdist group of test `nodeid` (None: the test is scheduled on its own)."""
    if _real_time(nodeid):
        return "real-time"
    path = nodeid.split("::", 1)[0]
    if path.startswith(SPREAD):
        return None
    if path in SHARED_SERVER:
        return "tests/serve: the package's server"
    # A module's tests share its module- and session-scoped fixtures (a real model loaded, speech
    # decoded once): on one worker, they are made once.
    return path


def _rank(nodeid: str) -> int:
    if _real_time(nodeid):
        return 0
    path = nodeid.split("::", 1)[0]
    return 1 + next((i for i, folder in enumerate(COSTLY) if path.startswith(folder)), len(COSTLY))


BESIDE_REAL_TIME_NICENESS = 5
"""The niceness of a worker once it runs anything but the real-time group (and of the sessions it
starts): the third worker fills the cores the real-time group leaves idle, at a third of the CPU
weight, so the real-time sessions still get the cores when they want them."""


def pytest_runtest_setup(item: pytest.Item) -> None:
    if not _real_time(item.nodeid):
        import threading

        from kame_cli.priority import renice_thread

        renice_thread(threading.get_native_id(), BESIDE_REAL_TIME_NICENESS)  # never lowered again


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import atexit

        atexit.register(_skip_interpreter_teardown)  # runs after every handler the tests register


def pytest_runtest_logfinish(nodeid: str, location: tuple[str, int | None, str]) -> None:
    """What a test leaves alive is moved out of the collector's sight (`gc.freeze`): a worker holds
    torch, LiteLLM and the rest, and each full collection walked all of it (0.3-1 s each, some tens a
    run); the objects of the tests after it are still collected."""
    import gc

    gc.freeze()


def _skip_interpreter_teardown() -> None:
    """A worker's last step: the results have been sent and every fixture is torn down, but the
    interpreter's own teardown (torch, CTranslate2, LiteLLM, matplotlib loaded) takes seconds while
    the suite waits for it. `kame` itself ends the same way (`cli.main`)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: _rank(item.nodeid))  # stable: the order within a folder stays


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's scope scheduling with the groups above as scopes (its own `xdist_group` marks do not
    reach the test ids under pytest 9.2)."""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _group(nodeid) or nodeid

    return GroupScheduling(config, log)


@pytest.fixture(scope="session", autouse=True)
def session_templates() -> Iterator[Any]:
    """A front-end and a back-end template per worker, named in this worker's environment: every
    `kame talk` a test starts forks its children from them instead of importing torch, moshi and
    LiteLLM again (tests of the fresh-interpreter path unset the variable: `fresh_interpreters`)."""
    from kame_cli.session.template import templates_for_children

    with templates_for_children() as shared:
        yield shared


@pytest.fixture
def fresh_interpreters(monkeypatch: pytest.MonkeyPatch) -> None:
    """This test's `kame talk` children start as fresh interpreters, as without templates."""
    from kame_cli.session.template import TEMPLATES_ENV

    monkeypatch.delenv(TEMPLATES_ENV, raising=False)
