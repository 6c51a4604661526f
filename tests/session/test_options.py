"""`kame talk`'s options: the CLI fills the tree, `validate()` holds every check between flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kame_cli.audio_io.aec_wiring import EchoSpec, aec_mode
from kame_cli.audio_io.config import AudioConfig
from kame_cli.engine.config import FrontendConfig
from kame_cli.errors import EXIT_BAD_INPUT, ConfigError
from kame_cli.session.options import FrontendSpec, InputSpec, OutputSpec, TalkOptions

WAV = Path("question.wav")


def test_the_cli_fills_each_flag_into_its_place_in_the_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    import kame_cli.session.talk as talk
    from kame_cli.cli import run

    asked: list[TalkOptions] = []

    def record(opts: TalkOptions, **_: Any) -> int:
        asked.append(opts)
        return 0

    monkeypatch.setattr(talk, "run_talk", record)
    flags = (
        "--profile offline --model random:tiny --device cpu --half --quantize none --seed 7 "
        "--input in.wav --fast --output out.wav --output-stereo --input-device 1 --output-device spk "
        "--no-speaker --log-dir logs --no-ui --no-llm --realtime --debug-step-delay-ms 5 "
        "--aec off --headphones --echo-reference in.wav"
    )
    assert run(["talk", *flags.split()]) == 0
    assert asked == [
        TalkOptions(
            profile="offline",
            frontend=FrontendSpec(model="random:tiny", device="cpu", half=True, quantize="none", seed=7),
            input=InputSpec(file=Path("in.wav"), fast=True, device="1"),
            output=OutputSpec(file=Path("out.wav"), stereo=True, device="spk", speaker=False),
            echo=EchoSpec(aec="off", headphones=True, reference=Path("in.wav")),
            log_dir=Path("logs"),
            no_ui=True,
            no_llm=True,
            realtime=True,
            debug_step_delay_ms=5.0,
        )
    ]
    assert run(["talk"]) == 0
    assert asked[-1] == TalkOptions()  # no flag: every value is the profile's


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (TalkOptions(frontend=FrontendSpec(quantize="int4")), "--quantize int4: expected none or int8"),
        (TalkOptions(input=InputSpec(fast=True)), "--fast needs --input FILE"),
        (TalkOptions(output=OutputSpec(stereo=True)), "--output-stereo needs --output FILE"),
        (TalkOptions(debug_step_delay_ms=-1.0), "--debug-step-delay-ms must be >= 0"),
        (TalkOptions(profile=" "), "--profile is empty"),
        (TalkOptions(echo=EchoSpec(reference=WAV)), "--echo-reference replays a recording: it needs --input"),
        (TalkOptions(echo=EchoSpec(aec="maybe")), "--aec must be one of auto, on, off (got 'maybe')"),
        (TalkOptions(echo=EchoSpec(aec="on", headphones=True)), "--headphones turns echo cancellation off"),
    ],
)
def test_each_contradiction_is_one_line_that_names_the_flag(opts: TalkOptions, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        opts.validate()
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
    assert caught.value.exit_code == EXIT_BAD_INPUT


def test_consistent_options_pass_and_resolve_against_the_profile() -> None:
    opts = TalkOptions(
        frontend=FrontendSpec(model="random:tiny", seed=3),
        input=InputSpec(file=WAV, fast=True),
        output=OutputSpec(file=Path("out.wav"), stereo=True),
        echo=EchoSpec(reference=WAV),
    )
    opts.validate()
    cfg = opts.frontend.apply(FrontendConfig(device="cpu", half=False))
    assert (cfg.model, cfg.seed, cfg.device, cfg.half) == ("random:tiny", 3, "cpu", False)
    assert FrontendSpec().apply(cfg) == cfg  # nothing asked: the profile's values stay
    assert aec_mode(AudioConfig(aec="on"), opts.echo) == "on"
    assert aec_mode(AudioConfig(aec="on"), EchoSpec(aec="auto", headphones=False)) == "auto"


def test_a_speaker_plays_for_a_microphone_or_a_named_device() -> None:
    assert TalkOptions().plays
    assert not TalkOptions(output=OutputSpec(speaker=False)).plays  # --no-speaker
    assert not TalkOptions(input=InputSpec(file=WAV)).plays  # a file input is not played
    assert TalkOptions(input=InputSpec(file=WAV), output=OutputSpec(device="spk", speaker=False)).plays
