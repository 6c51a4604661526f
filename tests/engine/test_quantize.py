"""`--quantize int8`: moshi's QLinear layers through the real loader, and the one-line refusal on CPU.

Users get int8 on CUDA only. bitsandbytes 0.49 also has CPU kernels, which lets these tests run the
loader's int8 path on tiny checkpoint files here, below the public CUDA check.
"""

from __future__ import annotations

import os
import subprocess
import sys
import wave
from pathlib import Path

import pytest
import torch
from torch import nn

from kame_cli.engine import loader
from kame_cli.engine.checkpoint import resolve_checkpoint
from kame_cli.engine.config import FrontendConfig
from kame_cli.engine.model import OracleLMModel
from kame_cli.engine.quantize import int8_bytes, is_quantized, require_int8
from kame_cli.errors import DeviceError, ProfileError

REPO_ROOT = Path(__file__).resolve().parents[2]
_CPU = torch.device("cpu")


def _load(checkpoint: Path, *, quantize: bool) -> loader.Frontend:
    files = resolve_checkpoint(FrontendConfig(model=str(checkpoint), device="cpu"))
    return loader._checkpoint_frontend(str(checkpoint), files, _CPU, torch.float32, 1, quantize=quantize)


def _codes(lm: OracleLMModel) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    codes = torch.randint(0, lm.card, (1, lm.num_codebooks, 12), generator=generator)
    codes[:, 0] = torch.randint(0, lm.text_card, (1, 12), generator=generator)
    return codes


@pytest.mark.parametrize("checkpoint_name", ["kame_checkpoint", "moshi_checkpoint"])
def test_int8_makes_every_linear_a_qlinear_keeps_the_oracle_table_and_stays_close(
    checkpoint_name: str, request: pytest.FixtureRequest
) -> None:
    from moshi.utils.quantize import QLinear

    checkpoint: Path = request.getfixturevalue(checkpoint_name)
    reference = _load(checkpoint, quantize=False)
    quantized = _load(checkpoint, quantize=True)
    assert quantized.quantized and not reference.quantized and is_quantized(quantized.lm)

    linears = [m for m in reference.lm.modules() if isinstance(m, nn.Linear)]
    qlinears = [m for m in quantized.lm.modules() if isinstance(m, QLinear)]
    assert len(qlinears) == len(linears) > 0
    assert not any(isinstance(m, nn.Linear) for m in quantized.lm.modules())
    assert all(q.weight.dtype == torch.int8 for q in qlinears)  # type: ignore[has-type]
    assert all(q.weight_scb.dtype == torch.float32 for q in qlinears)  # type: ignore[has-type]
    # The oracle table (and every embedding) is left as it was; for plain Moshi it is still text_emb's copy.
    assert torch.equal(quantized.lm.oracle_emb.weight, reference.lm.oracle_emb.weight)
    assert torch.equal(quantized.lm.text_emb.weight, reference.lm.text_emb.weight)
    assert quantized.oracle_from_text_emb == (checkpoint_name == "moshi_checkpoint")
    # The memory estimate the loader checks against is the size the weights really take.
    meta = loader._build_lm(
        loader.builtin.tiny_lm_config(reference.lm.text_card), torch.device("meta"), torch.float32, checkpoint
    )
    held = sum(p.numel() * p.element_size() for p in quantized.lm.parameters())
    assert int8_bytes(meta, torch.float32) == held

    with torch.no_grad():
        exact = reference.lm(_codes(reference.lm)).text_logits.float()
        approx = quantized.lm(_codes(quantized.lm)).text_logits.float()
    assert float((approx - exact).norm() / exact.norm()) < 0.05


def test_an_int8_front_end_streams_through_lmgen(kame_checkpoint: Path) -> None:
    frontend = _load(kame_checkpoint, quantize=True)
    silence = torch.zeros(1, 1, frontend.frame_size)
    tokens = None
    with torch.no_grad(), frontend.step_context(), frontend.mimi.streaming(1):
        lm_gen = frontend.make_lm_gen()
        with lm_gen.streaming(1):
            for _ in range(4):
                frontend.lm.set_oracle_token(frontend.text_start_id)
                tokens = lm_gen.step(frontend.mimi.encode(silence))
    assert tokens is not None and tokens.shape == (1, frontend.lm.dep_q + 1, 1)


def test_int8_on_cpu_is_refused_in_one_line() -> None:
    with pytest.raises(DeviceError) as caught:
        require_int8(_CPU)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("--quantize int8 needs a CUDA GPU")
    with pytest.raises(DeviceError, match="needs a CUDA GPU"):
        loader.load_frontend(FrontendConfig(model="random:7b", device="cpu", quantize="int8"))


def _kame(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kame_cli.cli", *args],
        cwd=REPO_ROOT,
        env=os.environ | {"CUDA_VISIBLE_DEVICES": ""},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_kame_talk_quantize_int8_on_cpu_exits_2_with_one_line(tmp_path: Path) -> None:
    speech = tmp_path / "in.wav"
    with wave.open(str(speech), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(24000)
        wav.writeframes(b"\0\0" * 24000)
    done = _kame("talk", "--profile", "offline", "--quantize", "int8", "--input", str(speech), "--no-llm")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert lines[0].startswith("kame: error: --quantize int8 needs a CUDA GPU"), lines
    bad = _kame("talk", "--profile", "offline", "--quantize", "int4", "--input", str(speech))
    assert bad.returncode == 2 and bad.stderr.strip() == "kame: error: --quantize int4: expected none or int8"


def test_the_profile_key_sets_int8_and_the_flag_overrides_it(tmp_path: Path) -> None:
    from kame_cli.profiles import load_profile
    from kame_cli.session.build import frontend_config
    from kame_cli.session.options import FrontendSpec, TalkOptions

    offline = (REPO_ROOT / "profiles" / "offline.toml").read_text()
    profile = tmp_path / "int8.toml"
    profile.write_text(offline.replace('model = "random:tiny"', 'model = "random:tiny"\nquantize = "int8"'))
    loaded = load_profile(str(profile))
    assert frontend_config(loaded, TalkOptions()).quantize == "int8"
    assert frontend_config(loaded, TalkOptions(frontend=FrontendSpec(quantize="none"))).quantize == "none"
    bad = tmp_path / "int4.toml"
    bad.write_text(offline.replace('model = "random:tiny"', 'model = "random:tiny"\nquantize = "int4"'))
    with pytest.raises(ProfileError) as caught:
        load_profile(str(bad))
    assert str(caught.value).endswith('[frontend] quantize: must be one of "none", "int8" (got "int4")')
