"""`kame bench soak`'s memory sampler: kame's processes by role, and no sample of a session that has
ended (the soak once reported its end as "RSS 1161 -> 69 MB": a sample taken after the front-end
and back-end had exited)."""

from __future__ import annotations

import subprocess
import sys

from kame_cli.bench.soak import RssSampler


def _stand_in(role: str) -> subprocess.Popen[bytes]:
    """A child process whose command line names a session role, as the real ones' do."""
    command = [sys.executable, "-c", "import sys; sys.stdin.read()", role]
    return subprocess.Popen(command, stdin=subprocess.PIPE)


def test_samples_only_while_the_front_end_and_the_back_end_run() -> None:
    sampler = RssSampler()
    sampler.sample()
    assert sampler.samples == [], "no session running yet: nothing to sample"
    children = [_stand_in("kame_cli.session.frontend_proc"), _stand_in("kame_cli.session.backend_proc")]
    try:
        sampler.sample()
        assert len(sampler.samples) == 1
        roles = sampler.by_process[0]
        assert set(roles) == {"supervisor", "frontend", "backend"}
        assert sampler.samples[0][1] == sum(roles.values()) > roles["supervisor"]
    finally:
        for child in children:
            child.communicate(b"")  # EOF on stdin: the child exits, and is reaped here
    sampler.sample()
    assert len(sampler.samples) == len(sampler.by_process) == 1, "the session's end is not a sample"
