"""CUDA graphs and the static KV cache they need: the fast paths compute what the readable ones do.

The static cache runs anywhere, so it is checked on the CPU; recording and replaying graphs needs
a GPU (those tests are skipped without one and run with `pytest tests/test_graphs.py` on a GPU
machine).
"""

import pytest
import torch

from minids.generate import generate
from minids.graphs import decoder_for, prepare_optimizer, set_lr
from minids.model import KVCache, Transformer
from minids.tasks import TaskConfig
from minids.train import TrainConfig, make_optimizer, pretrain

PROMPTS = ["<|bos|>Q:7+5=?", "<|bos|>Q:1+2-3+4-5+6=?<think>1+2=3", "<|bos|>Q:9=?"]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@torch.no_grad()
def test_static_cache_decodes_like_the_growing_cache(tiny_model, tok):
    """Left-padded prompts, then token by token: same logits with fixed shapes and a device position."""
    from minids.generate import left_pad
    ids, mask = left_pad([tok.encode(p, allowed_special="all") for p in PROMPTS], tok.pad_id, "cpu")
    B, P = ids.shape
    grow = KVCache(tiny_model.config, B, P + 8)
    static = KVCache(tiny_model.config, B, static=True)
    a = tiny_model(ids, key_mask=mask, cache=grow).logits[:, -1]
    b = tiny_model(ids, key_mask=mask, cache=static).logits[:, -1]
    for _ in range(8):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
        nxt = a.argmax(-1)[:, None]
        a = tiny_model(nxt, cache=grow).logits[:, -1]
        b = tiny_model(nxt, cache=static).logits[:, -1]
    assert static.pos == grow.pos == P + 8 and int(static.position) == P + 8
    static.reset()
    assert static.pos == 0 and int(static.position) == 0 and static.key_mask.all()


def test_set_lr_handles_float_and_tensor_rates(tiny_model):
    opt = make_optimizer(tiny_model, 1e-3, 0.1)
    set_lr(opt, 5e-4)
    assert all(g["lr"] == 5e-4 for g in opt.param_groups)
    prepare_optimizer(opt)
    tensors = [g["lr"] for g in opt.param_groups]
    set_lr(opt, 2e-4)
    assert all(torch.is_tensor(g["lr"]) and g["lr"] is t and float(g["lr"]) == pytest.approx(2e-4, rel=1e-6)
               for g, t in zip(opt.param_groups, tensors))  # updated in place: a graph keeps reading it


# ----------------------------------------------------------------------------- on a GPU

@cuda
def test_graphed_generation_equals_eager(tiny_config, tok):
    torch.manual_seed(0)
    model = Transformer(tiny_config).cuda().eval()
    for _ in range(2):  # the second call reuses the recorded decoder
        graphed = generate(model, tok, PROMPTS, 16, temperature=0, stop=())
        eager = generate(model, tok, PROMPTS, 16, temperature=0, stop=(), cuda_graph=False)
        assert torch.equal(graphed.ids, eager.ids)
        torch.testing.assert_close(graphed.logprobs, eager.logprobs, atol=1e-4, rtol=1e-4)
    assert decoder_for(model, len(PROMPTS)).graph is not None
    sampled = [generate(model, tok, PROMPTS, 16, seed=3, cuda_graph=g).ids for g in (True, False)]
    assert torch.equal(*sampled)


@cuda
def test_graphed_pretraining_equals_eager(tiny_config, tok):
    """Twenty steps with every step replayed from CUDA graphs track the eager run (same data, same seed)."""
    task = TaskConfig()
    runs = []
    for graph in (True, False):
        torch.manual_seed(0)
        model = Transformer(tiny_config)
        config = TrainConfig(steps=20, batch_size=8, eval_every=0, warmup_steps=5, device="cuda",
                             cuda_graph=graph, bf16=False)
        runs.append(pretrain(model, tok, task, config, progress=False))
    (g, e) = runs
    losses_g = [r["loss"] for r in g.history]
    losses_e = [r["loss"] for r in e.history]
    assert losses_g == pytest.approx(losses_e, abs=2e-3)
    assert losses_g[-1] < losses_g[0]
    for (name, pg), pe in zip(g.model.named_parameters(), e.model.parameters()):
        torch.testing.assert_close(pg, pe, atol=2e-3, rtol=1e-3, msg=name)
    for layer_g, layer_e in zip(g.history[-1]["load"], e.history[-1]["load"]):
        assert layer_g == pytest.approx(layer_e, abs=0.05)


@cuda
def test_graphed_pretraining_resumes(tiny_config, tok, tmp_path):
    """A graphed run stopped at step 6 and resumed (new graphs, restored optimiser) ends where a straight run ends."""
    config = TrainConfig(steps=10, batch_size=8, eval_every=0, warmup_steps=2, device="cuda", bf16=False)

    def run(path, callback=None):
        torch.manual_seed(0)
        return pretrain(Transformer(tiny_config), tok, TaskConfig(), config, checkpoint=path, callback=callback,
                        progress=False)

    def ctrl_c_at_6(record):
        if record["step"] == 6:
            raise KeyboardInterrupt

    straight = run(tmp_path / "a.pt")
    assert run(tmp_path / "b.pt", ctrl_c_at_6).interrupted
    resumed = run(tmp_path / "b.pt")
    assert [r["loss"] for r in resumed.history] == pytest.approx([r["loss"] for r in straight.history], abs=2e-3)


@cuda
def test_graphed_generation_inside_a_users_autocast(tiny_config, tok):
    """A caller's own autocast block (with its weight-cast cache) must not leak into the recording."""
    torch.manual_seed(0)
    model = Transformer(tiny_config).cuda().eval()
    outs = []
    for graph in (True, False):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            outs.append(generate(model, tok, PROMPTS, 16, temperature=0, stop=(), cuda_graph=graph))
    torch.cuda.empty_cache()  # free the cache's copies; a stale recording would now read garbage
    with torch.autocast("cuda", dtype=torch.bfloat16):
        again = generate(model, tok, PROMPTS, 16, temperature=0, stop=())
    assert torch.isfinite(again.logprobs).all()
    assert torch.equal(again.ids, outs[0].ids)
    assert (outs[0].ids == outs[1].ids).float().mean() > 0.9  # bf16 rounding may split a near-tie
