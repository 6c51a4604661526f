"""A child process for tests/test_priority.py: a `StarvationGuard` in a process of its own (it
idles every other thread of its process, so never the test runner's), driven line by line.

`python -m tests.support.idle_guard_child [--unprivileged] [--stt WAV]` prints `ready`, then
answers each line on stdin once done, so the parent reads the threads' policies from /proc at
known points:
- `lag X`: the lag the guard reads becomes X seconds, then one `check()`;
- `check`: one `check()` (with `--stt`, the lag is the back-end's `SttLag` over a real worker);
- `feed`: (`--stt`) queue the WAV's frames to a worker that has not started: it hears nothing,
  as a starved one would;
- `run`: (`--stt`) start the worker, end the input and wait for its final transcript (printed);
- `release`: `release()`, as the back-end does when told to stop.
Each answer is one JSON object: the guard's state.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from typing import Any


def _unprivileged() -> None:
    """Root here means CAP_SYS_NICE: become nobody, whom RLIMIT_NICE 0 keeps in SCHED_IDLE."""
    if os.geteuid() == 0:
        os.setresgid(65534, 65534, 65534)
        os.setgroups([])
        os.setresuid(65534, 65534, 65534)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--unprivileged", action="store_true")
    parser.add_argument("--stt")
    args = parser.parse_args()
    from kame_cli.priority import StarvationGuard
    from kame_cli.session.backend_proc import SttLag

    if args.unprivileged:
        _unprivileged()  # after the imports: nobody may not read the interpreter's files
    lag = [0.0]
    finals: list[str] = []
    worker = _stt_worker(finals) if args.stt else None
    stt_lag = SttLag(worker)
    # Two threads that only wait, as the back-end's link threads do: the guard places the first and
    # keeps out of SCHED_IDLE the second, as the back-end does its link's reader.
    idle = threading.Event()
    waiters = [threading.Thread(target=idle.wait, name=f"waiter-{n}", daemon=True) for n in range(2)]
    for waiter in waiters:
        waiter.start()
    kept = [waiters[1].native_id or 0]
    guard = StarvationGuard(stt_lag if worker is not None else lambda: lag[0], keep=lambda: kept)
    guard.start()

    def answer(**extra: Any) -> None:
        state = {"guard_tid": guard.tid, "kept_tid": kept[0], "reversible": guard.reversible}
        state["starved"] = guard.starved
        print(json.dumps({**state, "trips": guard.trips, **extra}), flush=True)

    answer(ready=True)
    for line in sys.stdin:
        command, _, value = line.strip().partition(" ")
        if command == "lag":
            lag[0] = float(value)
        elif command == "feed":
            _feed(worker, args.stt)
        elif command == "release":
            guard.release()
            answer(finals=finals)
            continue
        elif command == "run":
            worker.start()
            stt_lag.input_ended()
            worker.end_input()
            worker.wait_flushed(120.0)
            stt_lag.flushed()
        guard.check()
        answer(finals=finals)
    guard.stop()
    if worker is not None:
        worker.stop()


def _stt_worker(finals: list[str]) -> Any:
    from kame_cli.backends.stt.config import SttConfig
    from kame_cli.backends.stt.worker import SttWorker
    from kame_cli.clock import SessionClock
    from kame_cli.events import Event, FinalTranscript

    class Finals:
        def publish(self, event: Event) -> None:
            if isinstance(event, FinalTranscript):
                finals.append(event.text)

    return SttWorker(SttConfig(model="tiny.en", device="cpu"), Finals(), SessionClock(), realtime=True)


def _feed(worker: Any, wav: str) -> None:
    import soundfile as sf

    from kame_cli.clock import FRAME_SAMPLES

    audio, _ = sf.read(wav, dtype="float32")
    for start in range(0, len(audio) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        worker.submit_frame(audio[start : start + FRAME_SAMPLES])


if __name__ == "__main__":
    main()
