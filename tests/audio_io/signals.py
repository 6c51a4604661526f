"""Test signals and the measurements the audio tests make on them."""

from __future__ import annotations

import numpy as np


def sine(freq: float, rate: int, seconds: float, amplitude: float = 0.5, phase: float = 0.0) -> np.ndarray:
    n = round(rate * seconds)
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(n) / rate + phase)).astype(np.float32)


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    """The frequency of the strongest FFT bin (Hann window), in Hz."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.shape[0])))
    return float(np.argmax(spectrum) * rate / samples.shape[0])


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
