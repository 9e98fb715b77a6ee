"""Multi-token prediction: its loss, its place in pretraining, and speculative decoding that changes nothing."""

import dataclasses
import random

import pytest
import torch
import torch.nn.functional as F

from minids.generate import generate
from minids.model import Transformer
from minids.mtp import acceptance_by_position, speculative_generate
from minids.tasks import TaskConfig, eval_problems, sample_document
from minids.train import TrainConfig, make_batch, pack_batch, pretrain


@pytest.fixture(scope="module")
def mtp_config(tiny_config):
    return dataclasses.replace(tiny_config, mtp_depth=1)


@pytest.fixture(scope="module")
def trained(mtp_config, tok):
    """An MTP model pretrained briefly (MLA attention, so both ideas meet), with its history."""
    torch.manual_seed(0)
    config = dataclasses.replace(mtp_config, attention="mla", kv_lora_rank=16, qk_nope_head_dim=16,
                                 qk_rope_head_dim=8, v_head_dim=16)
    model = Transformer(config)
    result = pretrain(model, tok, TaskConfig(), TrainConfig(steps=60, batch_size=8, warmup_steps=5, lr=1e-2,
                                                           min_lr=1e-3, eval_every=0, device="cpu"),
                      progress=False)
    return result.model.eval(), result.history


def test_loss_is_the_shifted_cross_entropy_by_hand(mtp_config, tok):
    """Depth 1 at position t reads x_{t+1} and is scored on x_{t+2}: spelled out on one unpadded row."""
    torch.manual_seed(0)
    model = Transformer(mtp_config).eval()
    x = torch.randint(0, tok.vocab_size, (1, 12))
    idx, targets = x[:, :-1], x[:, 1:]
    out = model(idx, targets)
    h = model.mtp[0](out.hidden[:, :-1], model.embed(x[:, 1:-1]), model.rope_cos[:10], model.rope_sin[:10],
                     torch.ones(10, 10, dtype=torch.bool).tril()[None, None])
    by_hand = F.cross_entropy(model.head(model.mtp[0].norm(h))[0], x[0, 2:])
    torch.testing.assert_close(out.mtp_loss, by_hand, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.loss, out.ce_loss + mtp_config.mtp_loss_weight * out.mtp_loss)


def test_packed_and_padded_batches_give_the_same_mtp_loss(mtp_config, tok):
    """Depth k never reads across documents packed into one row."""
    torch.manual_seed(0)
    model = Transformer(dataclasses.replace(mtp_config, mtp_depth=2)).eval()
    docs = [sample_document(random.Random(i)) for i in range(6)]
    idx, targets, mask = make_batch(tok, docs)
    padded = model(idx, targets, loss_mask=mask, segments=(idx != tok.pad_id).long())
    p_idx, p_targets, p_mask, segments = pack_batch(tok, docs)
    assert p_idx.shape[0] < idx.shape[0]  # really packed
    packed = model(p_idx, p_targets, loss_mask=p_mask, segments=segments)
    # the mean over positions weighs documents by their tokens either way, so the means agree
    torch.testing.assert_close(packed.mtp_loss, padded.mtp_loss, atol=1e-5, rtol=1e-5)


def test_pretraining_logs_mtp_loss_and_it_falls(trained, mtp_config):
    _, history = trained
    assert all("mtp_loss" in r for r in history)
    first, last = history[0]["mtp_loss"], sum(r["mtp_loss"] for r in history[-5:]) / 5
    assert last < 0.7 * first, (first, last)
    assert Transformer(mtp_config).num_params()["mtp"] > 0


def test_speculative_decoding_is_plain_greedy(trained, tok):
    """Same tokens as generate(temperature=0); tokens = passes + accepted drafts."""
    model, _ = trained
    problems = eval_problems(6, seed=3)
    results = []
    for p in problems:
        plain = generate(model, tok, [p.prompt], 40, temperature=0)
        spec = speculative_generate(model, tok, p.prompt, 40)
        assert spec.ids == plain.ids[0][plain.mask[0]].tolist()
        assert spec.text == plain.texts[0]
        stopped_on_draft = spec.accepted and spec.accepted[-1] and len(spec.ids) == spec.main_passes + sum(spec.accepted) - 1
        assert len(spec.ids) == spec.main_passes + sum(spec.accepted) or stopped_on_draft
        results.append(spec)
    positions, rate, counts = acceptance_by_position(results)
    assert sum(counts) == sum(len(r.accepted) for r in results)
    assert all(0 <= a <= 1 for a in rate) and positions == sorted(positions)


def test_speculative_decoding_checks_its_input(tiny_model, trained, tok):
    with pytest.raises(ValueError, match="mtp_depth"):
        speculative_generate(tiny_model, tok, "<|bos|>Q:1+2=?")
    model, _ = trained
    with pytest.raises(ValueError, match="max_seq_len"):
        speculative_generate(model, tok, "<|bos|>Q:1+2=?", model.config.max_seq_len)
