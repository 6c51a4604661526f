"""Parity with the reference servers (KAME's server_oracle.py, moshi's server.py) around the model.

- a checkpoint's `lm_gen_config` (temperatures, top-k) reaches `LMGen`, a profile value wins;
- Mimi's streaming state is reset after the first frame, so the loop's tokens and audio equal a
  loop written in the reference servers' order, token for token;
- the oracle command queue is bounded: appends past 64 are dropped and counted, resets never.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kame_cli.bus import EventBus
from kame_cli.clock import FRAME_SAMPLES, SessionClock
from kame_cli.engine.config import FrontendConfig
from kame_cli.engine.loader import Frontend, Sampling, load_frontend
from kame_cli.engine.loop import ORACLE_QUEUE_APPENDS, FrontendLoop
from kame_cli.errors import CheckpointError
from kame_cli.events import OracleAppend, OracleReset
from tests.engine.streaming import stream, voice_like_frames

CHECKPOINT_SAMPLING = {"temp": 0.31, "temp_text": 0.22, "top_k": 17, "top_k_text": 5}


def _with_gen_config(kame_checkpoint: Path, target: Path, gen_config: object) -> Path:
    """The session's tiny checkpoint with another `lm_gen_config` in its config.json."""
    target.mkdir()
    for item in kame_checkpoint.iterdir():
        if item.name != "config.json":
            (target / item.name).symlink_to(item)
    config = json.loads((kame_checkpoint / "config.json").read_text())
    config["lm_gen_config"] = gen_config
    (target / "config.json").write_text(json.dumps(config))
    return target


@pytest.fixture(scope="module")
def frontend(kame_checkpoint: Path) -> Frontend:
    return load_frontend(FrontendConfig(model=str(kame_checkpoint), device="cpu"))


def _sampling(lm_gen: object) -> tuple[float, float, int, int]:
    return (lm_gen.temp, lm_gen.temp_text, lm_gen.top_k, lm_gen.top_k_text)  # type: ignore[attr-defined]


def test_the_checkpoints_sampling_settings_reach_lmgen(kame_checkpoint: Path, tmp_path: Path) -> None:
    directory = _with_gen_config(kame_checkpoint, tmp_path / "ckpt", CHECKPOINT_SAMPLING)
    cfg = FrontendConfig(model=str(directory), device="cpu")
    loaded = load_frontend(cfg)
    assert loaded.lm_gen_config == CHECKPOINT_SAMPLING
    # The profile sets none of them: the checkpoint's own values, as both reference servers pass.
    assert _sampling(loaded.make_lm_gen(Sampling.from_config(cfg))) == (0.31, 0.22, 17, 5)
    # A value the profile (or a flag) sets wins over the checkpoint's; the rest stay the checkpoint's.
    mine = FrontendConfig(model=str(directory), device="cpu", temperature=0.9, top_k_text=3)
    assert _sampling(loaded.make_lm_gen(Sampling.from_config(mine))) == (0.9, 0.22, 17, 3)
    # The loop builds its LMGen the same way.
    loop = FrontendLoop(loaded, EventBus(), SessionClock(), on_output=lambda step, pcm: None)
    assert _sampling(loop.frontend.make_lm_gen(loop.sampling)) == (0.31, 0.22, 17, 5)


def test_no_lm_gen_config_means_moshis_defaults(kame_checkpoint: Path, tmp_path: Path) -> None:
    directory = _with_gen_config(kame_checkpoint, tmp_path / "ckpt", {"cfg_coef": 1.0})
    loaded = load_frontend(FrontendConfig(model=str(directory), device="cpu"))
    assert _sampling(loaded.make_lm_gen(Sampling())) == (0.8, 0.7, 250, 25)


@pytest.mark.parametrize("bad", [{"temp": "hot"}, {"top_k": 0}, {"temp_text": -1.0}, ["temp"]])
def test_a_malformed_lm_gen_config_is_one_line(kame_checkpoint: Path, tmp_path: Path, bad: object) -> None:
    directory = _with_gen_config(kame_checkpoint, tmp_path / "ckpt", bad)
    with pytest.raises(CheckpointError, match=r"config\.json: lm_gen_config") as err:
        load_frontend(FrontendConfig(model=str(directory), device="cpu"))
    assert "\n" not in str(err.value)


@torch.no_grad()
def _reference_loop(frontend: Frontend, frames: list[np.ndarray], *, seed: int):
    """The reference servers' per-frame order: encode, reset Mimi after the first frame, step, decode."""
    mimi = frontend.mimi
    lm_gen = frontend.make_lm_gen(Sampling())
    text: list[int | None] = []
    pcm: list[np.ndarray] = []
    with frontend.step_context(), mimi.streaming(1), lm_gen.streaming(1):
        silence = torch.zeros(1, 1, FRAME_SAMPLES)
        for _ in range(4):  # warm-up, as both servers do
            frontend.lm.set_oracle_token(frontend.text_padding_id)
            tokens = lm_gen.step(mimi.encode(silence))
            if tokens is not None:
                mimi.decode(tokens[:, 1:])
        mimi.reset_streaming()
        lm_gen.reset_streaming()
        torch.manual_seed(seed)
        for index, frame in enumerate(frames):
            frontend.lm.set_oracle_token(frontend.text_padding_id)
            codes = mimi.encode(torch.from_numpy(frame)[None, None])
            if index == 0:
                mimi.reset_streaming()
            tokens = lm_gen.step(codes)
            if tokens is None:
                text.append(None)
                pcm.append(np.zeros(FRAME_SAMPLES, dtype=np.float32))
                continue
            text.append(int(tokens[0, 0, 0].item()))
            pcm.append(mimi.decode(tokens[:, 1:])[0, 0].float().numpy())
    return text, pcm


def test_mimi_is_reset_after_the_first_frame_like_the_reference(
    frontend: Frontend, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = voice_like_frames(24, seed=5)
    calls: list[str] = []
    mimi = frontend.mimi
    encode, reset = mimi.encode, mimi.reset_streaming

    def logged_encode(x: torch.Tensor) -> torch.Tensor:
        calls.append("encode")
        return encode(x)

    def logged_reset() -> None:
        calls.append("reset")
        reset()

    monkeypatch.setattr(mimi, "encode", logged_encode)
    monkeypatch.setattr(mimi, "reset_streaming", logged_reset)
    result = stream(frontend, frames, seed=11)
    monkeypatch.undo()
    # After warm-up (4 encodes) and the session's fresh start (a reset): frame 1 is encoded, then
    # Mimi is reset, then every other frame is only encoded.
    session = calls[calls.index("reset", 4) + 1 :]
    assert session == ["encode", "reset"] + ["encode"] * (len(frames) - 1), session

    # And the loop equals one written in the reference servers' order, token for token.
    ref_text, ref_pcm = _reference_loop(frontend, frames, seed=11)
    assert result.loop.text_tokens == ref_text
    got = [pcm for _, pcm in sorted(result.outputs, key=lambda item: item[0])]
    np.testing.assert_allclose(np.concatenate(got), np.concatenate(ref_pcm), atol=1e-5)


def test_the_oracle_queue_drops_and_counts_appends_past_its_bound(frontend: Frontend) -> None:
    loop = FrontendLoop(frontend, EventBus(), SessionClock(), on_output=lambda step, pcm: None)
    loop.send_oracle(OracleReset(1))
    for _ in range(ORACLE_QUEUE_APPENDS + 9):
        loop.send_oracle(OracleAppend(1, (5,)))
    assert ORACLE_QUEUE_APPENDS == 64
    assert loop.dropped_oracle_appends == 10  # the reset took one of the 64 places
    loop.send_oracle(OracleReset(2))  # a reset is never dropped: the next answer must start
    assert loop.dropped_oracle_appends == 10
    queued = []
    while not loop._commands.empty():
        queued.append(loop._commands.get_nowait())
    assert queued[0] == OracleReset(1) and queued[-1] == OracleReset(2)
    assert len(queued) == ORACLE_QUEUE_APPENDS + 1
