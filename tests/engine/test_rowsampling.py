"""Per-row sampling: each row of a batch samples as moshi would alone, seeded by its own generator."""

from __future__ import annotations

import torch
from moshi.utils.sampling import sample_token

from kame_cli.engine import rowsampling
from kame_cli.engine.config import FrontendConfig
from kame_cli.engine.loader import Sampling, load_frontend


def test_each_row_samples_as_moshi_alone_with_its_seed() -> None:
    logits = torch.randn(3, 1, 1, 40, generator=torch.Generator().manual_seed(0))
    noise = rowsampling.RowNoise(3, [7, 40], torch.device("cpu"))
    noise.draw([torch.Generator().manual_seed(seed) for seed in (11, 12, 13)])
    top_k = noise.sample(logits, 0.9, 7)
    full = noise.sample(logits, 1.3, 0)
    for row, seed in enumerate((11, 12, 13)):
        torch.manual_seed(seed)  # moshi alone: the global generator, top-k draws first
        assert top_k[row].tolist() == sample_token(logits[row : row + 1], True, 0.9, 7)[0].tolist()
        assert full[row].tolist() == sample_token(logits[row : row + 1], True, 1.3, 0)[0].tolist()
    # Different seeds, different draws: the rows are not one stream.
    assert len({tuple(noise._host_all[row].tolist()) for row in range(3)}) == 3


def test_without_active_noise_moshis_sampling_is_unchanged() -> None:
    import moshi.models.lm as lm_module

    rowsampling.install()
    rowsampling.install()  # idempotent: still one level of dispatch
    logits = torch.randn(2, 1, 1, 30, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(5)
    got = lm_module.sample_token(logits, True, 0.8, 10)
    torch.manual_seed(5)
    assert got.tolist() == sample_token(logits, True, 0.8, 10).tolist()


def test_greedy_calls_get_no_noise_buffer() -> None:
    frontend = load_frontend(FrontendConfig(model="random:tiny", device="cpu"))
    lm = frontend.lm
    sampled = rowsampling.sampling_widths(frontend.make_lm_gen(Sampling(top_k=9, top_k_text=4)))
    assert sampled == [4] + [9] * lm.dep_q
    greedy_audio = frontend.make_lm_gen(Sampling(temperature=0.0, top_k_text=4))
    assert rowsampling.sampling_widths(greedy_audio) == [4]
