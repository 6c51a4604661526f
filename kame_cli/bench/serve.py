"""`kame bench serve`: N real WebSocket clients on loopback against a real `kame serve`.

Each client speaks real speech (espeak-ng questions, or `--audio-dir` WAVs) as Ogg/Opus at
real-time pace, with jitter (frames held back and sent in bursts of up to three), and keeps what
comes back. Figures:
- connect -> handshake and connect -> first audio;
- the latency the network path adds: the client's arrival time of step i's audio against when the
  front-end produced it (the `Output` metadata carries that time; on loopback the two clocks are
  one);
- audio gaps per client: output steps that never arrived, or arrived more than 240 ms after the
  one before;
- step p50/p99, deadline misses, late client frames (the server's counts);
- the informed-oracle latency per turn (`kame bench tandem`'s measure (a), on each client's log);
- the step p99 of a local `kame talk` of the same audio in the same run, and the ratio;
- the batch's cost: the server runs `--max-sessions N` (all N clients in one batch), and its step
  p50 over the local session's (B = 1) in the same run is `step_ratio_vs_b1`; `sessions_held` counts
  the clients that held real time (no audio gap); `cpu_per_session_pct` is the server's CPU (its
  processes and their children: front-end host, back-ends) over the clients' run, per session, in %
  of one core.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer

from kame_cli.cli_options import JsonOption
from kame_cli.clock import FRAME_SAMPLES, FRAME_SECONDS
from kame_cli.errors import ConfigError, RuntimeFailure
from kame_cli.events import DeadlineMiss, Event, SessionStarted, StepTiming
from kame_cli.priority import deprioritize_current_thread

_READY = re.compile(r"ready: (wss?)://[^:]+:(\d+)/api/chat")
_GAP_S = 3 * FRAME_SECONDS
_MAX_BURST = 3
_TAIL_FRAMES = 13
"""Frames a client may hold back and send together (1: no jitter)."""


@dataclass
class ClientRun:
    """What one bench client measured."""

    name: str
    refused: bool = False
    handshake_ms: float | None = None
    first_audio_ms: float | None = None
    added_ms: list[float] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    audio_start: float | None = None
    """When this client's audio time 0 began (monotonic): its frame k went out at k + 1 frames after."""
    session_offset: float | None = None

    def origin(self) -> float | None:
        """`audio_start` on the session's clock: where the tandem measures put audio time 0."""
        if self.audio_start is None or self.session_offset is None:
            return None
        return self.audio_start + self.session_offset

    def gaps(self) -> int:
        missing = sum(max(0, b - a - 1) for a, b in zip(self.indices, self.indices[1:], strict=False))
        stalls = sum(1 for a, b in zip(self.arrivals, self.arrivals[1:], strict=False) if b - a > _GAP_S)
        return missing + stalls


async def _client(name: str, url: str, audio: Any, seed: int, max_burst: int = _MAX_BURST) -> ClientRun:
    import aiohttp
    import numpy as np
    import sphn

    from kame_cli.serve import metadata, protocol

    run = ClientRun(name)
    writer, reader = sphn.OpusStreamWriter(24_000), sphn.OpusStreamReader(24_000)
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as http:
        connected = loop.time()
        try:
            ws = await http.ws_connect(f"{url}/api/chat?kame=1")
        except aiohttp.WSServerHandshakeError as err:
            if err.status == 503:
                run.refused = True
                return run
            raise
        async with ws:
            while True:
                raw = await ws.receive(600)
                if raw.type != aiohttp.WSMsgType.BINARY:
                    raise RuntimeFailure(
                        f"the server closed bench client {name} before its session ({raw.data})"
                    )
                if isinstance(protocol.decode(raw.data), protocol.Handshake):
                    break
            run.handshake_ms = (loop.time() - connected) * 1000.0

            async def receive() -> None:
                async for raw in ws:
                    if raw.type != aiohttp.WSMsgType.BINARY:
                        continue
                    message = protocol.decode(raw.data)
                    now = time.monotonic()
                    if isinstance(message, protocol.Audio):
                        if run.first_audio_ms is None and reader.append_bytes(message.ogg).size:
                            run.first_audio_ms = (loop.time() - connected) * 1000.0
                    elif isinstance(message, protocol.Metadata):
                        info = metadata.from_json(message.data)
                        if isinstance(info, metadata.OutputMark):
                            run.added_ms.append((now - info.produced) * 1000.0)
                            run.indices.append(info.index)
                            run.arrivals.append(now)
                        elif isinstance(info, metadata.SessionTime):
                            run.session_offset = info.t - now  # session clock = monotonic + offset
                        elif info is not None and not isinstance(
                            info, metadata.QueuePlace | metadata.TokenPieces
                        ):
                            run.events.append(info)

            receiving = asyncio.create_task(receive())
            start = loop.time()
            run.audio_start = time.monotonic()
            # A second of silence after the speech, sent like the rest: the voice's last steps come
            # back while the client still speaks, so that no step goes without a client frame.
            spoken = np.concatenate(
                [np.asarray(audio, np.float32), np.zeros(_TAIL_FRAMES * FRAME_SAMPLES, np.float32)]
            )
            frames = len(spoken) // FRAME_SAMPLES
            i = 0
            while i < frames:
                burst = rng.randint(1, max_burst)
                last = min(frames, i + burst)
                # Held back until the last frame of the burst is due, then sent together: jitter.
                await asyncio.sleep(max(0.0, start + last * FRAME_SECONDS - loop.time()))
                for k in range(i, last):
                    ogg = writer.append_pcm(spoken[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES])
                    if ogg:
                        await ws.send_bytes(protocol.encode(protocol.Audio(ogg)))
                i = last
            await ws.close()
            await receiving
    return run


def _informed_latencies(run: ClientRun, audio: Any, directory: Path) -> list[float]:
    """`kame bench tandem`'s (a) for each turn of this client's session."""
    import numpy as np
    import soundfile as sf

    directory.mkdir(parents=True)
    from kame_cli.session.logfile import encode_events, with_session_marks

    events = list(with_session_marks(run.events))
    (directory / "events.jsonl").write_bytes(encode_events(events))
    # The session started before this client's audio time 0 (its handshake, then its first burst):
    # the measures read audio time a as session time "started" + a, so the input is written with
    # that much silence first.
    started = next((e.t for e in events if isinstance(e, SessionStarted)), None)
    origin = run.origin()
    lead = 0 if started is None or origin is None else max(0, round((origin - started) * 24_000))
    heard = np.concatenate([np.zeros(lead, np.float32), np.asarray(audio, np.float32)])
    sf.write(directory / "input.wav", heard, 24_000, subtype="PCM_16")
    return informed_in_log(directory, heard)


def informed_in_log(directory: Path, audio: Any) -> list[float]:
    """(a) for each turn of the session logged in `directory`, whose input is `audio`."""
    from kame_cli.session.record import read_session
    from kame_cli.tandem.measures import measure_turns, turns_from_segments, vad_segments

    record = read_session(directory, paced=True)
    figures = measure_turns(record, turns_from_segments(vad_segments(audio, 24_000)))
    return [f.informed_s for f in figures if f.informed_s is not None]


def _start_server(profile: str, model: str, clients: int, log: TextIO) -> tuple[subprocess.Popen[str], str]:
    command = [
        sys.executable, "-m", "kame_cli.cli", "serve", "--port", "0", "--profile", profile,
        "--model", model, "--max-sessions", str(clients), "--max-queue", "0",
    ]  # fmt: skip
    from kame_cli.session.template import without_templates

    # The server's CPU is measured over its process tree: its host and back-ends must be its own
    # descendants, not forks of templates a caller (`kame eval`, the test suite) shares.
    with without_templates():
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
    assert process.stderr is not None
    for line in process.stderr:
        match = _READY.search(line)
        if match:
            print(f"serve: {line.strip()}", file=log, flush=True)
            return process, f"http://127.0.0.1:{match.group(2)}"
    process.wait(10)
    raise RuntimeFailure(f"kame serve did not start (exit {process.returncode})")


def _stop_server(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def _metric(url: str, name: str) -> float:
    import urllib.request

    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(line.split()[1]) for line in text.splitlines() if line.startswith(name + " "))


def _late_frames(url: str) -> float:
    """The server's count, once every session has ended (a session adds its count as it ends)."""
    deadline = time.monotonic() + 10.0
    while _metric(url, "kame_sessions_active") > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    return _metric(url, "kame_late_frames_total")


def _cpu_seconds(pid: int) -> float:
    """CPU time of a process and everything under it, the children that ended included (their parent
    collected their times)."""
    import psutil

    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in tree:
        try:
            t = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def _local_steps(wav: Path, profile: str, model: str, directory: Path) -> list[float]:
    import io

    from kame_cli.bench.isolation import file_session
    from kame_cli.session.talk import run_talk

    opts = file_session(wav, profile, model, directory, no_ui=True)
    from kame_cli.session.logfile import read_log

    run_talk(opts, out=io.StringIO())
    events = read_log(directory / "events.jsonl")
    return [e.total_ms for e in events if isinstance(e, StepTiming)]


def _inputs(audio_dir: Path | None, clients: int, seconds: float, tmp: Path) -> list[Path]:
    if audio_dir is None:
        from kame_cli.bench.soak import soak_input

        return [soak_input(tmp / "input.wav", seconds / 60.0)] * clients
    wavs = sorted(audio_dir.glob("*.wav"))
    if not wavs:
        raise ConfigError(f"--audio-dir {audio_dir}: no .wav files in it")
    return [wavs[i % len(wavs)] for i in range(clients)]


def bench_serve(
    clients: int,
    seconds: float,
    profile: str,
    model: str,
    audio_dir: Path | None,
    log: TextIO,
    max_burst: int = _MAX_BURST,
) -> dict[str, Any]:
    """Run the local baseline, then the server with `clients` clients; return the figures."""
    from kame_cli.audio_io.resampling import resampled
    from kame_cli.stats import percentile

    with tempfile.TemporaryDirectory(prefix="kame-bench-serve-") as tmp_name:
        tmp = Path(tmp_name)
        wavs = _inputs(audio_dir, clients, seconds, tmp)
        audios = []
        for wav in wavs:
            import soundfile as sf

            data, rate = sf.read(wav, dtype="float32", always_2d=True)
            audios.append(resampled(data.mean(axis=1), rate, 24_000)[: int(seconds * 24_000)])
        baseline_wav = tmp / "baseline.wav"
        import soundfile as sf

        sf.write(baseline_wav, audios[0], 24_000, subtype="PCM_16")
        print(f"serve bench: a local session of the same {seconds:.0f} s first…", file=log, flush=True)
        local_steps = _local_steps(baseline_wav, profile, model, tmp / "local")
        local_informed = informed_in_log(tmp / "local", audios[0])
        process, url = _start_server(profile, model, clients, log)
        # The clients stand for other machines: on this one they yield the CPU to the server.
        deprioritize_current_thread()
        try:
            print(f"serve bench: {clients} client(s), {seconds:.0f} s each…", file=log, flush=True)

            async def everyone() -> list[ClientRun]:
                return list(
                    await asyncio.gather(
                        *(_client(f"c{i}", url, audios[i], i, max_burst) for i in range(clients))
                    )
                )

            cpu_before, began = _cpu_seconds(process.pid), time.monotonic()
            runs = asyncio.run(everyone())
            cpu_s, wall_s = _cpu_seconds(process.pid) - cpu_before, time.monotonic() - began
            late = _late_frames(url)
        finally:
            _stop_server(process)
        served = [r for r in runs if not r.refused]
        steps = [e.total_ms for r in served for e in r.events if isinstance(e, StepTiming)]
        informed = [
            _informed_latencies(r, audios[i], tmp / f"client-{i}")
            for i, r in enumerate(runs)
            if not r.refused
        ]
    added = [ms for r in served for ms in r.added_ms]
    step_p99 = percentile(steps, 99) if steps else 0.0
    local_p99 = percentile(local_steps, 99) if local_steps else 0.0
    step_p50, local_p50 = (percentile(steps, 50) if steps else None), percentile(local_steps, 50)
    gaps = [r.gaps() for r in served]
    return {
        "clients": clients,
        "seconds": seconds,
        "max_burst": max_burst,
        "refused": sum(r.refused for r in runs),
        "connect_to_handshake_ms": [r.handshake_ms for r in served],
        "connect_to_first_audio_ms": [r.first_audio_ms for r in served],
        "round_trip_added_ms_p50": percentile(added, 50) if added else None,
        "round_trip_added_ms_p99": percentile(added, 99) if added else None,
        "audio_gaps": gaps,
        "step_p50_ms": step_p50,
        "step_p99_ms": step_p99,
        "local_step_p50_ms": local_p50,
        "local_step_p99_ms": local_p99,
        "step_p99_ratio_vs_local": step_p99 / local_p99 if local_p99 else None,
        "step_ratio_vs_b1": step_p50 / local_p50 if step_p50 and local_p50 else None,
        "sessions_held": sum(1 for g in gaps if g == 0),
        "cpu_per_session_pct": round(100.0 * cpu_s / wall_s / len(served), 1) if served else None,
        "deadline_misses": sum(1 for r in served for e in r.events if isinstance(e, DeadlineMiss)),
        "late_frames": int(late),
        "informed_oracle_s": [[round(x, 3) for x in per] for per in informed],
        "local_informed_oracle_s": [round(x, 3) for x in local_informed],
    }


def _print(f: dict[str, Any], out: TextIO) -> None:
    def ms(value: Any) -> str:
        return "-" if value is None else f"{value:.1f} ms"

    print(f"  clients {f['clients']} ({f['refused']} refused), {f['seconds']:.0f} s each", file=out)
    print(
        f"  connect -> handshake {f['connect_to_handshake_ms']} ms"
        f"  -> first audio {f['connect_to_first_audio_ms']} ms",
        file=out,
    )
    print(
        f"  network path adds p50 {ms(f['round_trip_added_ms_p50'])}  p99 {ms(f['round_trip_added_ms_p99'])}"
        f"  audio gaps {f['audio_gaps']}",
        file=out,
    )
    ratio = f["step_p99_ratio_vs_local"]
    shown = "-" if ratio is None else f"{ratio:.2f}"
    print(
        f"  step p50 {ms(f['step_p50_ms'])}  p99 {ms(f['step_p99_ms'])}"
        f"  (local {ms(f['local_step_p99_ms'])}, ratio {shown})  misses {f['deadline_misses']}"
        f"  late frames {f['late_frames']}",
        file=out,
    )
    b1 = f["step_ratio_vs_b1"]
    print(
        f"  batch of {f['clients']}: step p50 {ms(f['step_p50_ms'])} over {ms(f['local_step_p50_ms'])} at"
        f" B = 1: {'-' if b1 is None else f'{b1:.2f}'}x;  held real time (no gap): {f['sessions_held']}"
        f" of {f['clients']};  server CPU per session {f['cpu_per_session_pct']} % of a core",
        file=out,
    )
    print(
        f"  informed oracle after end of speech (s): {f['informed_oracle_s']}"
        f"  (local: {f['local_informed_oracle_s']})",
        file=out,
        flush=True,
    )


def register(bench_app: typer.Typer) -> None:
    @bench_app.command("serve")
    def serve_command(
        clients: Annotated[
            int, typer.Option(min=1, max=64, help="WebSocket clients, all connecting at once.")
        ] = 1,
        seconds: Annotated[
            float, typer.Option(min=5.0, help="Audio each client speaks, in real time.")
        ] = 30.0,
        audio_dir: Annotated[
            Path | None, typer.Option("--audio-dir", help="WAVs to speak (one per client, in turn).")
        ] = None,
        profile: Annotated[str, typer.Option(help="Profile name or path.")] = "offline",
        model: Annotated[str, typer.Option(help="Front-end model.")] = "random:tiny",
        burst: Annotated[
            int,
            typer.Option("--burst", min=1, max=25, help="Frames a client may hold back and send at once."),
        ] = _MAX_BURST,
        as_json: JsonOption = False,
    ) -> None:
        """kame serve on loopback with N real clients: handshake, added latency, gaps, steps."""
        human = sys.stderr if as_json else sys.stdout
        figures = bench_serve(clients, seconds, profile, model, audio_dir, human, max_burst=burst)
        _print(figures, human)
        if as_json:
            print(json.dumps(figures))
