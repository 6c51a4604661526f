"""`kame bench stt --channel`: each channel is reproducible and changes the audio as it claims."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from kame_cli.bench import channels
from tests.session.conftest import run_kame
from tests.support.speech import synthesize, white_noise

RATE = 24_000


@pytest.fixture(scope="module")
def speech() -> list[np.ndarray]:
    texts = ("How many legs does a spider have?", "The tallest mountain.", "Bake bread at home.")
    # Quiet enough that mixing babble never needs the whole-mix gain: the SNR is then exact.
    return [0.3 * synthesize(t) for t in texts]


def _band_energy(audio: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / RATE)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


def test_telephone_is_deterministic_and_keeps_only_the_phone_band() -> None:
    noise = white_noise(3.0, RATE, level=0.1, seed=1)
    call = channels.telephone(noise, RATE)
    assert np.array_equal(call, channels.telephone(noise, RATE))
    assert abs(len(call) - len(noise)) <= RATE // 100
    inside = _band_energy(call, 400, 3300)
    # Before: white noise spreads evenly up to 12 kHz. After: 8 kHz sampling and the band-pass.
    assert _band_energy(noise, 4200, 12_000) > inside
    assert _band_energy(call, 4200, 12_000) < 1e-3 * inside
    assert _band_energy(call, 0, 150) < 1e-2 * inside
    # The codec is lossy: not just a filter.
    assert not np.allclose(call[: len(noise)], noise[: len(call)], atol=0.05)


def test_noisy_mixes_other_clips_at_the_snr_asked_for_reproducibly(speech) -> None:
    for snr in (10.0, 5.0):
        mixed = channels.apply("noisy", speech, 0, RATE, seed=7, snr_db=snr)
        again = channels.apply("noisy", speech, 0, RATE, seed=7, snr_db=snr)
        assert np.array_equal(mixed, again)
        babble = mixed.astype(np.float64) - speech[0]
        measured = 10 * np.log10(channels.power(speech[0]) / channels.power(babble))
        assert measured == pytest.approx(snr, abs=0.05)
        # The babble is the other clips' speech, not the clip itself.
        assert abs(np.corrcoef(babble, speech[0])[0, 1]) < 0.2
    other_seed = channels.apply("noisy", speech, 0, RATE, seed=8, snr_db=10.0)
    assert not np.array_equal(other_seed, channels.apply("noisy", speech, 0, RATE, seed=7, snr_db=10.0))


def test_fast_shortens_by_its_seeded_tempo(speech) -> None:
    factors = [channels.tempo_factor(3, i) for i in range(len(speech))]
    assert all(channels.TEMPO_RANGE[0] <= f <= channels.TEMPO_RANGE[1] for f in factors)
    assert len(set(factors)) == len(factors)
    assert factors == [channels.tempo_factor(3, i) for i in range(len(speech))]
    for i, clip in enumerate(speech):
        quick = channels.apply("fast", speech, i, RATE, seed=3, snr_db=10.0)
        assert np.array_equal(quick, channels.apply("fast", speech, i, RATE, seed=3, snr_db=10.0))
        assert len(clip) / len(quick) == pytest.approx(factors[i], rel=0.02)


def _bench(tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_kame("bench", "stt", "--audio-dir", str(tmp_path), "--fast", *args, timeout=300)


def test_bench_json_names_the_channel_and_scores_the_transformed_audio(tmp_path) -> None:
    from tests.support.speech import speak

    text = "How many legs does a spider have?"
    speak(text, tmp_path / "spider.wav")
    (tmp_path / "spider.txt").write_text(text)
    run = _bench(tmp_path, "--channel", "telephone", "--json")
    assert run.returncode == 0, run.stderr
    figures = json.loads(run.stdout)
    assert figures["channel"] == "telephone" and figures["snr_db"] is None
    # The decodes hear the call, where tiny.en may mishear a word; the question stays recognizable.
    assert "how many legs" in figures["per_clip"][0]["offline"].lower()
    assert figures["clips"] == 1 and figures["words"] == 7
    assert "GSM" in run.stderr


def test_noisy_with_one_clip_is_bad_input(tmp_path) -> None:
    from tests.support.speech import speak

    speak("Hello there.", tmp_path / "hello.wav")
    (tmp_path / "hello.txt").write_text("Hello there.")
    run = _bench(tmp_path, "--channel", "noisy", "--json")
    assert run.returncode == 2
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "--channel noisy" in lines[0] and "Traceback" not in run.stderr
