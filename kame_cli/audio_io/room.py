"""A simulated room and full-duplex sound card, for echo tests and `kame bench echo`.

What the speaker's callback hands to the "device" is played `out_latency_s` later, reaches the
microphone through a room impulse response, is captured with the user's voice and a noise floor,
and is delivered to the microphone's callback `in_latency_s` after its last sample was captured:
the same callbacks, with the same timestamps (`currentTime`, `outputBufferDacTime`,
`inputBufferAdcTime`) a PortAudio duplex stream gives them, driven block by block with no real clock.

Two room sets: `classic` (the rooms `kame bench echo` was first tuned on, reproduced seed for seed)
and `wide`, which adds what those lacked: reverberation up to RT60 0.9 s, a loudspeaker that soft-clips,
background noise, the user farther away, and a jump of the playback path's delay mid-session that
the stream timestamps do not report (a Bluetooth or USB device re-buffering).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kame_cli.clock import SessionClock

SPEED_OF_SOUND = 343.0
_RUMBLE_POLE = 0.977
_LOG_LIMITS = (float(np.log(0.15)), float(np.log(1.5)))


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
    speaker_limit: float | None = None
    """The loudspeaker soft-clips: what it plays is `limit * tanh(x / limit)` (None: linear)."""
    noise_snr_db: float | None = None
    """Background noise (a fan's low-frequency rumble) against the user's voice at the microphone;
    None: only the microphone's -70 dBFS floor."""
    jump_s: float = 0.0
    """The playback path's delay changes by this much mid-session without the timestamps saying so
    (positive: later)."""
    jump_at: float = 0.5
    """...at this share of the session."""

    @staticmethod
    def draw(rng: np.random.Generator) -> RoomSetup:
        """Speaker-to-mic 0.3-1.5 m, RT60 0.2-0.6 s, device delay 20-200 ms, level -6..+6 dB; the
        user 0.4-0.8 m from the microphone."""
        w, d, h, distance, rt60, delay, level, user = _uniforms(
            rng,
            (4.0, 7.0),
            (3.0, 5.0),
            (2.5, 3.2),
            (0.3, 1.5),
            (0.2, 0.6),
            (0.020, 0.200),
            (-6.0, 6.0),
            (0.4, 0.8),
        )
        return RoomSetup(distance, rt60, delay, level, (w, d, h), user)

    @staticmethod
    def draw_wide(rng: np.random.Generator) -> RoomSetup:
        """Speaker-to-mic 0.3-2 m, RT60 0.3-0.9 s, device delay 20-200 ms, level -6..+6 dB, the user
        0.8-2 m away, a speaker limit of 0.15-1.5 (THD 0.3-9 % at the assistant's level), noise at
        10-30 dB below the user, and a hidden delay jump of 20-80 ms either way at 30-70 % of the
        session."""
        w, d, h, jump = _uniforms(rng, (5.0, 9.0), (4.0, 7.0), (2.6, 3.5), (0.020, 0.080))
        jump *= 1.0 if rng.random() < 0.5 else -1.0
        distance, rt60, delay, level, user, log_limit, snr, jump_at = _uniforms(
            rng,
            (0.3, 2.0),
            (0.3, 0.9),
            (0.020, 0.200),
            (-6.0, 6.0),
            (0.8, 2.0),
            _LOG_LIMITS,
            (10.0, 30.0),
            (0.3, 0.7),
        )
        return RoomSetup(
            distance, rt60, delay, level, (w, d, h), user, float(np.exp(log_limit)), snr, jump, jump_at
        )

    @property
    def hidden_delays_s(self) -> tuple[float, float]:
        """The playback path's unreported extra delay before and after the jump: never below zero
        (a device cannot play a block before it is handed over)."""
        return (max(0.0, -self.jump_s), max(0.0, self.jump_s))


def _uniforms(rng: np.random.Generator, *ranges: tuple[float, float]) -> list[float]:
    """One uniform draw from each range, in order (the order fixes what a seed gives)."""
    return [float(rng.uniform(lo, hi)) for lo, hi in ranges]


ROOM_SETS = {"classic": RoomSetup.draw, "wide": RoomSetup.draw_wide}
"""How `kame bench echo --rooms` draws a room from a seed."""


def soft_clip(x: np.ndarray, limit: float | None) -> np.ndarray:
    """A loudspeaker driven into saturation: `limit * tanh(x / limit)`; linear when `limit` is None."""
    return x if limit is None else limit * np.tanh(x / limit)


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
    is the played signal (through the speaker's `speaker_limit`) convolved with `rir` times
    `echo_gain`. The latencies may be changed between ticks (a device whose buffering changes): later
    blocks are then played or delivered earlier or later, as on real hardware; `hidden_delay_s` does
    the same to what is played without the timestamps showing it. `background_dbfs` adds a fan's
    rumble (white noise through a one-pole low-pass) at that RMS level.
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
        speaker_limit: float | None = None,
        background_dbfs: float | None = None,
    ) -> None:
        self.rate = rate
        self.block = block
        self.rir = np.asarray(rir, dtype=np.float64) * echo_gain
        self.out_latency_s = out_latency_s
        self.in_latency_s = in_latency_s
        self.near = np.zeros(0) if near is None else np.asarray(near, dtype=np.float64)
        self._noise_rms = 10 ** (noise_dbfs / 20)
        self._rng = np.random.default_rng(seed)
        self.speaker_limit = speaker_limit
        self.hidden_delay_s = 0.0
        self._background_rms = None if background_dbfs is None else 10 ** (background_dbfs / 20)
        self._rumble_state = np.zeros(1)
        self.clock = clock or ManualClock()
        self._origin = round(self.clock.now() * rate)
        """Capture position of `near[0]`: the user's voice starts with the simulation."""
        self._air = np.zeros(0)
        """Played samples by play position (sample index of session time x rate)."""
        self.echo_only: list[np.ndarray] = []
        """The echo part of each captured block (to measure what a canceller removed)."""
        from scipy import fft

        # A block hears the last taps - 1 + block played samples; a circular convolution that long
        # wraps only into its first taps - 1 outputs, which `_echo` drops ("valid"): one transform
        # each way a block, the room's own computed here once.
        self._heard = self.rir.shape[0] - 1 + block
        self._nfft = fft.next_fast_len(self._heard, real=True)
        self._rir_spectrum = fft.rfft(self.rir, self._nfft)

    def tick(self, playback: Any, capture: Any) -> None:
        """One block period: the output callback fills a block, the input callback gets one."""
        t = self.clock.now()
        out = np.zeros((self.block, 1), dtype=np.float32)
        playback(out, self.block, _TimeInfo(t, outputBufferDacTime=t + self.out_latency_s), _Flags())
        start = round((t + self.out_latency_s + self.hidden_delay_s) * self.rate)
        self._play(start, soft_clip(out[:, 0].astype(np.float64), self.speaker_limit))
        end = round((t - self.in_latency_s) * self.rate)
        echo = self._echo(end)
        mic = echo + self._near(end - self.block - self._origin, end - self._origin)
        mic += self._rng.normal(scale=self._noise_rms, size=self.block)
        if self._background_rms is not None:
            mic += self._rumble()
        self.echo_only.append(echo.astype(np.float32))
        adc = t - self.in_latency_s - self.block / self.rate
        indata = mic.astype(np.float32)[:, None]
        capture(indata, self.block, _TimeInfo(t, inputBufferAdcTime=adc), _Flags())
        self.clock.t = t + self.block / self.rate

    def _rumble(self) -> np.ndarray:
        from scipy.signal import lfilter

        # A one-pole low-pass at ~180 Hz: the power of white noise through it is (1 - a) / (1 + a).
        a = _RUMBLE_POLE
        white = self._rng.normal(scale=self._background_rms * np.sqrt((1 + a) / (1 - a)), size=self.block)
        out, self._rumble_state = lfilter([1.0 - a], [1.0, -a], white, zi=self._rumble_state)
        return np.asarray(out)

    def _play(self, start: int, samples: np.ndarray) -> None:
        end = start + samples.shape[0]
        if end > self._air.shape[0]:
            grown = np.zeros(max(end, 2 * self._air.shape[0]))
            grown[: self._air.shape[0]] = self._air
            self._air = grown
        self._air[start:end] = samples

    def _echo(self, end: int) -> np.ndarray:
        """The echo of the block that ends at capture position `end`."""
        from scipy import fft

        first = end - self._heard
        air = np.zeros(self._heard)
        src_lo, src_hi = max(first, 0), min(end, self._air.shape[0])
        if src_hi > src_lo:
            air[src_lo - first : src_hi - first] = self._air[src_lo:src_hi]
        echo = fft.irfft(fft.rfft(air, self._nfft) * self._rir_spectrum, self._nfft)
        return np.asarray(echo[self._heard - self.block : self._heard])

    def _near(self, lo: int, hi: int) -> np.ndarray:
        out = np.zeros(hi - lo)
        a, b = max(lo, 0), min(hi, self.near.shape[0])
        if b > a:
            out[a - lo : b - lo] = self.near[a:b]
        return out
