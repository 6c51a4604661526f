"""A simulated room and full-duplex sound card, for echo tests and `kame bench echo`.

What the speaker's callback hands to the "device" is played `out_latency_s` later, reaches the
microphone through a room impulse response, is captured with the user's voice and a noise floor,
and is delivered to the microphone's callback `in_latency_s` after its last sample was captured:
the same callbacks, with the same timestamps (`currentTime`, `outputBufferDacTime`,
`inputBufferAdcTime`) a PortAudio duplex stream gives them, driven block by block with no real clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kame_cli.clock import SessionClock

SPEED_OF_SOUND = 343.0


class ManualClock(SessionClock):
    """A session clock that only moves when told (simulated devices run faster than real time)."""

    def __init__(self, start: float = 1.0) -> None:
        super().__init__(origin=0.0)
        self.t = start

    def now(self) -> float:
        return self.t


@dataclass(frozen=True, slots=True)
class RoomSetup:
    """One simulated room, drawn from a seed."""

    distance_m: float
    rt60_s: float
    device_delay_s: float
    """Output latency + input latency of the simulated card."""
    level_db: float
    """The loudspeaker's acoustic level against the user's voice (the same source level at 0 dB):
    what reaches the microphone then also depends on the two distances and the room."""
    dims_m: tuple[float, float, float]
    user_distance_m: float = 0.6
    """The user's mouth to the microphone."""

    @staticmethod
    def draw(rng: np.random.Generator) -> RoomSetup:
        """Speaker-to-mic 0.3-1.5 m, RT60 0.2-0.6 s, device delay 20-200 ms, level -6..+6 dB; the
        user 0.4-0.8 m from the microphone."""
        dims = (float(rng.uniform(4.0, 7.0)), float(rng.uniform(3.0, 5.0)), float(rng.uniform(2.5, 3.2)))
        return RoomSetup(
            distance_m=float(rng.uniform(0.3, 1.5)),
            rt60_s=float(rng.uniform(0.2, 0.6)),
            device_delay_s=float(rng.uniform(0.020, 0.200)),
            level_db=float(rng.uniform(-6.0, 6.0)),
            dims_m=dims,
            user_distance_m=float(rng.uniform(0.4, 0.8)),
        )


def shoebox_rir(setup: RoomSetup, rate: int, rng: np.random.Generator) -> np.ndarray:
    """The speaker-to-microphone impulse response of a shoebox room (pyroomacoustics' image method)."""
    return shoebox_rirs(setup, rate, rng)[0]


def shoebox_rirs(setup: RoomSetup, rate: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(speaker to microphone, user to microphone) impulse responses of one shoebox room.

    Both include the spreading loss (1 / distance), so equal sources at the two distances reach the
    microphone at the levels their distances give.
    """
    import pyroomacoustics as pra

    dims = np.array(setup.dims_m)
    absorption, max_order = pra.inverse_sabine(setup.rt60_s, dims)
    room = pra.ShoeBox(dims, fs=rate, materials=pra.Material(absorption), max_order=max_order)
    margin = 0.4
    mic = np.array([rng.uniform(1.0, d - 1.0) for d in dims[:2]] + [rng.uniform(0.9, 1.3)])
    for distance in (setup.distance_m, setup.user_distance_m):
        for _ in range(1000):
            direction = rng.normal(size=3)
            direction[2] *= 0.2  # a desk: mostly horizontal
            source = mic + distance * direction / np.linalg.norm(direction)
            if np.all(source > margin) and np.all(source < dims - margin):
                break
        room.add_source(source)
    room.add_microphone(mic)
    room.compute_rir()
    return np.asarray(room.rir[0][0], dtype=np.float64), np.asarray(room.rir[0][1], dtype=np.float64)


@dataclass(slots=True)
class _TimeInfo:
    currentTime: float
    inputBufferAdcTime: float = 0.0
    outputBufferDacTime: float = 0.0


@dataclass(frozen=True, slots=True)
class _Flags:
    input_overflow: bool = False
    output_underflow: bool = False


class SimulatedDuplex:
    """A duplex card in a room: each `tick` runs the output callback, then the input callback, once.

    `near` is the user's voice at the microphone (device rate), from the first tick's time on; the echo
    is the played signal convolved with `rir` times `echo_gain`. The latencies may be changed
    between ticks (a device whose buffering changes): later blocks are then played or delivered
    earlier or later, as on real hardware.
    """

    def __init__(
        self,
        *,
        rate: int,
        block: int,
        rir: np.ndarray,
        out_latency_s: float,
        in_latency_s: float,
        echo_gain: float = 1.0,
        near: np.ndarray | None = None,
        noise_dbfs: float = -70.0,
        seed: int = 0,
        clock: ManualClock | None = None,
    ) -> None:
        self.rate = rate
        self.block = block
        self.rir = np.asarray(rir, dtype=np.float64) * echo_gain
        self.out_latency_s = out_latency_s
        self.in_latency_s = in_latency_s
        self.near = np.zeros(0) if near is None else np.asarray(near, dtype=np.float64)
        self._noise_rms = 10 ** (noise_dbfs / 20)
        self._rng = np.random.default_rng(seed)
        self.clock = clock or ManualClock()
        self._origin = round(self.clock.now() * rate)
        """Capture position of `near[0]`: the user's voice starts with the simulation."""
        self._air = np.zeros(0)
        """Played samples by play position (sample index of session time x rate)."""
        self.echo_only: list[np.ndarray] = []
        """The echo part of each captured block (to measure what a canceller removed)."""

    def tick(self, playback: Any, capture: Any) -> None:
        """One block period: the output callback fills a block, the input callback gets one."""
        t = self.clock.now()
        out = np.zeros((self.block, 1), dtype=np.float32)
        playback(out, self.block, _TimeInfo(t, outputBufferDacTime=t + self.out_latency_s), _Flags())
        start = round((t + self.out_latency_s) * self.rate)
        self._play(start, out[:, 0].astype(np.float64))
        end = round((t - self.in_latency_s) * self.rate)
        echo = self._echo(end - self.block, end)
        mic = echo + self._near(end - self.block - self._origin, end - self._origin)
        mic += self._rng.normal(scale=self._noise_rms, size=self.block)
        self.echo_only.append(echo.astype(np.float32))
        adc = t - self.in_latency_s - self.block / self.rate
        indata = mic.astype(np.float32)[:, None]
        capture(indata, self.block, _TimeInfo(t, inputBufferAdcTime=adc), _Flags())
        self.clock.t = t + self.block / self.rate

    def _play(self, start: int, samples: np.ndarray) -> None:
        end = start + samples.shape[0]
        if end > self._air.shape[0]:
            grown = np.zeros(max(end, 2 * self._air.shape[0]))
            grown[: self._air.shape[0]] = self._air
            self._air = grown
        self._air[start:end] = samples

    def _echo(self, lo: int, hi: int) -> np.ndarray:
        from scipy.signal import fftconvolve

        taps = self.rir.shape[0]
        first = lo - taps + 1
        air = np.zeros(hi - first)
        src_lo, src_hi = max(first, 0), min(hi, self._air.shape[0])
        if src_hi > src_lo:
            air[src_lo - first : src_hi - first] = self._air[src_lo:src_hi]
        return fftconvolve(air, self.rir, mode="valid")

    def _near(self, lo: int, hi: int) -> np.ndarray:
        out = np.zeros(hi - lo)
        a, b = max(lo, 0), min(hi, self.near.shape[0])
        if b > a:
            out[a - lo : b - lo] = self.near[a:b]
        return out
