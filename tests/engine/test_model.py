"""The oracle-aware LM: moshi's LM whose text embedding gains the oracle token's embedding."""

from __future__ import annotations

import torch
from moshi.models.lm import LMModel

from kame_cli.engine import builtin
from kame_cli.engine.model import OracleLMModel

TEXT_CARD = 60


def _models() -> tuple[OracleLMModel, LMModel]:
    config = builtin.tiny_lm_config(TEXT_CARD)
    torch.manual_seed(0)
    kame = OracleLMModel(device="cpu", dtype=torch.float32, **config).eval()
    plain = LMModel(device="cpu", dtype=torch.float32, **config).eval()
    state = {k: v for k, v in kame.state_dict().items() if not k.startswith("oracle_emb.")}
    plain.load_state_dict(state)
    return kame, plain


def test_state_dict_adds_exactly_the_oracle_table() -> None:
    kame, plain = _models()
    extra = set(kame.state_dict()) - set(plain.state_dict())
    assert extra == {"oracle_emb.weight"}
    assert kame.oracle_emb.weight.shape == (TEXT_CARD + 1, kame.dim)
    assert kame.oracle_keys == extra


@torch.no_grad()
def test_streamed_step_equals_moshi_with_the_oracle_row_added_to_the_text_embedding() -> None:
    # Independent check of "summed with the text-token embedding, nothing else changes": plain
    # moshi, whose text-embedding row for this step's text token is text_emb + oracle_emb.
    kame, plain = _models()
    generator = torch.Generator().manual_seed(3)
    oracle_tokens = [TEXT_CARD, 7, 8, 3, 3, 9]
    original = plain.text_emb.weight.clone()
    with kame.streaming(1), plain.streaming(1):
        for oracle in oracle_tokens:
            sequence = torch.randint(0, 50, (1, kame.num_codebooks, 1), generator=generator)
            text = int(sequence[0, 0, 0])
            kame.set_oracle_token(oracle)
            got, got_logits = kame.forward_text(sequence)
            plain.text_emb.weight[text] = original[text] + kame.oracle_emb.weight[oracle]
            want, want_logits = plain.forward_text(sequence)
            plain.text_emb.weight.copy_(original)
            assert torch.equal(got, want)
            assert torch.equal(got_logits, want_logits)


@torch.no_grad()
def test_reset_puts_the_oracle_back_to_padding() -> None:
    kame, _ = _models()
    with kame.streaming(1):
        kame.set_oracle_token(11)
        state = kame._streaming_state
        assert state is not None and int(state.oracle_tokens[0, 0]) == 11
        kame.reset_streaming()
        assert int(state.oracle_tokens[0, 0]) == kame.text_padding_token_id


def test_outside_streaming_the_forward_is_moshis() -> None:
    kame, plain = _models()
    codes = torch.randint(0, 50, (1, kame.num_codebooks, 5))
    codes[:, 0] = torch.randint(0, TEXT_CARD, (1, 5))
    with torch.no_grad():
        assert torch.equal(kame(codes).text_logits, plain(codes).text_logits)
