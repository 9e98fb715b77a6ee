"""Pretraining: batches and loss masks, the LR schedule, determinism, atomic save/resume, learning."""

import math
import os
import signal
from dataclasses import replace

import pytest
import torch

from minids.checkpoint import load_checkpoint
from minids.device import resolve_device
from minids.model import Transformer
from minids.tasks import TaskConfig
from minids.train import TrainConfig, defer_interrupt, lr_at, make_batch, pretrain


def fresh_model(config, seed=0):
    torch.manual_seed(seed)
    return Transformer(config)


def quick(**kw):
    """A TrainConfig for a few fast steps (no evaluation)."""
    base = dict(steps=12, batch_size=4, warmup_steps=3, lr=1e-2, min_lr=1e-3, eval_every=0,
                checkpoint_every=6, seed=0)
    return TrainConfig(**{**base, **kw})


# ----------------------------------------------------------------------------- batches

def test_make_batch_hand_example(tok):
    """targets are idx shifted by one; the mask skips question targets and padding."""
    S = {name: tok.encode(name, allowed_special="all")[0]
         for name in ("<|bos|>", "<|eos|>", "<think>", "</think>", "<answer>", "</answer>")}
    pad = tok.pad_id
    docs = [("<|bos|><think>", "</think><answer></answer><|eos|>"),  # 2 prompt + 4 completion tokens
            ("<|bos|>", "<|eos|>")]  # 1 + 1
    idx, targets, mask = make_batch(tok, docs, mask_question=True)
    b, th, th_, a, a_, e = (S[n] for n in ("<|bos|>", "<think>", "</think>", "<answer>", "</answer>",
                                           "<|eos|>"))
    assert idx.tolist() == [[b, th, th_, a, a_], [b, pad, pad, pad, pad]]
    assert targets.tolist() == [[th, th_, a, a_, e], [e, pad, pad, pad, pad]]
    # row 0: the target at position 0 is the prompt's own '<think>': masked
    assert mask.tolist() == [[False, True, True, True, True], [True, False, False, False, False]]

    _, _, full = make_batch(tok, docs, mask_question=False)
    assert full.tolist() == [[True] * 5, [True, False, False, False, False]]


def test_make_batch_masks_question_on_real_documents(tok):
    """On a task document the first unmasked target is the first completion token."""
    prompt, completion = "<|bos|>Q:7+5-9=?", "<think>7+5=2,2-9=3</think><answer>3</answer><|eos|>"
    p = tok.encode(prompt, allowed_special="all")
    c = tok.encode(completion, allowed_special="all")
    idx, targets, mask = make_batch(tok, [(prompt, completion), ("<|bos|>Q:1=?", "<think></think>")])
    assert torch.equal(idx[0], torch.tensor((p + c)[:-1]))
    assert torch.equal(targets[0, :-1], idx[0, 1:])
    assert targets[0][mask[0]].tolist() == c  # exactly the completion is learned
    assert mask[1].sum() < mask[0].sum()  # shorter row: padding not learned
    assert (targets[mask] != tok.pad_id).all()


# ----------------------------------------------------------------------------- schedule and config

def test_lr_schedule_warmup_and_cosine_ends():
    """Linear warm-up reaches lr at the end of warm-up; the cosine ends at min_lr."""
    c = TrainConfig(steps=110, warmup_steps=10, lr=1e-3, min_lr=1e-4)
    assert lr_at(0, c) == pytest.approx(1e-4)  # (0 + 1) / 10 * lr
    assert lr_at(4, c) == pytest.approx(5e-4)
    assert lr_at(9, c) == pytest.approx(1e-3)
    assert lr_at(10, c) == pytest.approx(1e-3)  # cosine starts at the peak
    assert lr_at(60, c) == pytest.approx((1e-3 + 1e-4) / 2)  # halfway through the decay
    assert lr_at(110, c) == pytest.approx(1e-4)
    assert lr_at(500, c) == pytest.approx(1e-4)  # never below the floor
    decay = [lr_at(s, c) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))
    assert all(1e-4 - 1e-12 <= x <= 1e-3 + 1e-12 for x in decay)
    assert lr_at(0, replace(c, warmup_steps=0)) == pytest.approx(1e-3)


@pytest.mark.parametrize("kw, field", [
    (dict(steps=0), "steps"), (dict(batch_size=0), "batch_size"), (dict(warmup_steps=-1), "warmup_steps"),
    (dict(lr=0.0), "lr"), (dict(lr=1e-3, min_lr=2e-3), "min_lr"), (dict(grad_clip=0.0), "grad_clip"),
    (dict(pack="sometimes"), "pack"),
])
def test_train_config_validation(kw, field):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**kw)


# ----------------------------------------------------------------------------- determinism and resume

def test_same_seed_same_loss_curve(tok, tiny_config):
    """Two runs with the same seed produce exactly the same losses; another seed does not."""
    def losses(seed):
        result = pretrain(fresh_model(tiny_config, seed), tok, config=quick(steps=10, seed=seed), progress=False)
        return [h["loss"] for h in result.history]
    a, b, c = losses(0), losses(0), losses(1)
    assert len(a) == 10 and a == b
    assert a != c


def test_interrupt_save_and_resume_equals_uninterrupted_run(tok, tiny_config, tmp_path):
    """Ctrl-C at step 6 saves; resuming reaches exactly the losses and weights of a straight run."""
    config = quick()
    straight = pretrain(fresh_model(tiny_config), tok, config=config, checkpoint=tmp_path / "a.pt", progress=False)
    assert not straight.interrupted and len(straight.history) == 12

    def ctrl_c_at_6(record):
        if record["step"] == 6:
            raise KeyboardInterrupt

    ckpt = tmp_path / "b.pt"
    first = pretrain(fresh_model(tiny_config), tok, config=config, checkpoint=ckpt, callback=ctrl_c_at_6,
                     progress=False)
    assert first.interrupted and len(first.history) == 6
    assert load_checkpoint(ckpt).state["step"] == 6
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []

    # a differently initialised model: everything must come from the checkpoint
    resumed = pretrain(fresh_model(tiny_config, seed=99), tok, config=config, checkpoint=ckpt, progress=False)
    assert not resumed.interrupted
    assert [h["step"] for h in resumed.history] == list(range(1, 13))
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    assert [h["load"] for h in resumed.history] == [h["load"] for h in straight.history]
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert load_checkpoint(ckpt).state["step"] == 12


def test_resume_with_changed_settings_is_refused(tok, tiny_config, tmp_path):
    """A checkpoint resumes only with the settings it was made with; the error names the change."""
    ckpt = tmp_path / "run.pt"
    pretrain(fresh_model(tiny_config), tok, config=quick(steps=3, checkpoint_every=0), checkpoint=ckpt,
             progress=False)
    with pytest.raises(ValueError, match=r"another run, not resuming it: train\.lr: 0\.01 in the checkpoint, 0\.005 now; .*--restart"):
        pretrain(fresh_model(tiny_config), tok, config=quick(steps=3, checkpoint_every=0, lr=5e-3),
                 checkpoint=ckpt, progress=False)
    with pytest.raises(ValueError, match=r"task\.max_operands: 8 in the checkpoint, 5 now"):
        pretrain(fresh_model(tiny_config), tok, TaskConfig(max_operands=5),
                 config=quick(steps=3, checkpoint_every=0), checkpoint=ckpt, progress=False)
    # resume=False starts over and overwrites
    fresh = pretrain(fresh_model(tiny_config), tok, config=quick(steps=2, checkpoint_every=0, lr=5e-3),
                     checkpoint=ckpt, resume=False, progress=False)
    assert [h["step"] for h in fresh.history] == [1, 2]
    assert load_checkpoint(ckpt).state["train"]["lr"] == 5e-3


def test_defer_interrupt_finishes_the_block():
    """A Ctrl-C arriving inside the block is held until the block has finished, then raised."""
    done = []
    with pytest.raises(KeyboardInterrupt):
        with defer_interrupt():
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # give the handler a chance to run inside the block
                pass
            done.append(True)
    assert done == [True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ----------------------------------------------------------------------------- learning

def test_pretraining_lowers_the_loss(tok, tiny_config):
    """150 steps on the task mix: the loss falls from ~ln(V) to well under a third of it."""
    config = TrainConfig(steps=150, batch_size=8, warmup_steps=10, lr=1e-2, min_lr=1e-3, eval_every=0, seed=0)
    history = pretrain(fresh_model(tiny_config), tok, config=config, progress=False).history
    first = history[0]["loss"]
    last = sum(h["loss"] for h in history[-5:]) / 5
    assert first == pytest.approx(math.log(tok.vocab_size), abs=0.2)
    assert last < 0.3 * first and last < 1.5, (first, last)  # measured ~1.1 over seeds 0-2


def test_eval_records(tok, tiny_config):
    """With eval_every, evaluation results ("eval/...", fractions) land in that step's record only."""
    config = quick(steps=4, eval_every=3, eval_size=4, checkpoint_every=0)
    history = pretrain(fresh_model(tiny_config), tok, config=config, progress=False).history
    evals = [sorted(k for k in h if k.startswith("eval/")) for h in history]
    assert evals[0] == evals[1] == [] and evals[2] and evals[2] == evals[3]  # step 3, and the last step
    for key in evals[2]:
        assert 0.0 <= history[2][key] <= 1.0


def test_eval_records_measure_the_task_being_trained(tok, tiny_config, monkeypatch):
    """The periodic evaluation asks problems of the task given to pretrain(), not of the default task."""
    import minids.train as T
    seen = []
    monkeypatch.setattr(T, "working_accuracy", lambda model, tok, problems: seen.extend(problems) or 0.0)
    task = TaskConfig(min_operands=2, max_operands=3, max_operand=4, modulus=5)
    pretrain(fresh_model(tiny_config), tok, task, quick(steps=2, eval_every=2, eval_size=16, checkpoint_every=0),
             progress=False)
    assert len(seen) == 16
    assert all(p.modulus == 5 and 2 <= len(p.operands) <= 3 and max(p.operands) <= 4 for p in seen)


# ----------------------------------------------------------------------------- device

@pytest.mark.skipif(torch.cuda.is_available() or torch.backends.mps.is_available(),
                    reason="an accelerator is present")
def test_auto_device_is_cpu_here():
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")
def test_cuda_without_gpu_is_refused():
    with pytest.raises(ValueError, match="no CUDA"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="no CUDA"):
        pretrain(None, None, config=TrainConfig(device="cuda"), progress=False)


def test_bogus_device_is_refused():
    with pytest.raises(ValueError, match="'auto', 'cpu', 'cuda' or 'mps'"):
        resolve_device("gpu please")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_optimizer_updates_exactly_as_tensor_by_tensor_adamw(tok, tiny_config):
    """make_optimizer's batched (foreach) AdamW on a CPU gives bit-identical weights to the plain loop."""
    import copy
    import random

    from minids.tasks import sample_document
    from minids.train import make_optimizer
    rng = random.Random(0)
    batches = [make_batch(tok, [sample_document(rng) for _ in range(4)]) for _ in range(3)]
    models = [fresh_model(tiny_config), None]
    models[1] = copy.deepcopy(models[0])
    opts = [make_optimizer(models[0], 1e-3, 0.1)]
    groups = [[p for p in models[1].parameters() if p.dim() >= 2], [p for p in models[1].parameters() if p.dim() < 2]]
    opts.append(torch.optim.AdamW([{"params": groups[0], "weight_decay": 0.1}, {"params": groups[1], "weight_decay": 0.0}],
                                  lr=1e-3, betas=(0.9, 0.95), foreach=False))
    for model, opt in zip(models, opts):
        for idx, targets, mask in batches:
            opt.zero_grad()
            model(idx, targets, loss_mask=mask).loss.backward()
            opt.step()
    for a, b in zip(*(m.parameters() for m in models)):
        assert torch.equal(a, b)


def test_packed_batch_gives_the_padded_batch_loss_and_gradients(tok, tiny_config):
    """pack_batch: fewer rows, the same (context, target) pairs, the same loss and gradients and expert loads."""
    import random

    from minids.tasks import sample_document
    from minids.train import pack_batch
    rng = random.Random(3)
    docs = [sample_document(rng) for _ in range(12)]
    padded = make_batch(tok, docs)
    packed = pack_batch(tok, docs)
    assert packed[0].shape[0] < padded[0].shape[0] and packed[0].shape[1] == padded[0].shape[1]
    assert packed[2].sum() == padded[2].sum()  # the same number of scored targets
    assert sorted(packed[3].unique().tolist())[0] == 0 and packed[3].max() >= 2  # several documents share a row
    results = []
    for idx, targets, mask, segments in (padded + ((padded[0] != tok.pad_id).long(),), packed):
        model = fresh_model(tiny_config)
        out = model(idx, targets, loss_mask=mask, segments=segments)
        out.loss.backward()
        results.append((out.loss.detach(), {n: p.grad for n, p in model.named_parameters()},
                        [t.load for t in out.routing]))
    (loss_a, grads_a, load_a), (loss_b, grads_b, load_b) = results
    torch.testing.assert_close(loss_b, loss_a, atol=1e-6, rtol=1e-5)
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], atol=1e-6, rtol=1e-4, msg=name)
    assert all(torch.equal(a, b) for a, b in zip(load_a, load_b))


def test_segments_keep_attention_inside_each_document(tiny_model, tiny_config):
    """A document's logits do not change when another document shares its row."""
    g = torch.Generator().manual_seed(1)
    a, b = torch.randint(0, tiny_config.vocab_size, (1, 7), generator=g), torch.randint(0, 50, (1, 5), generator=g)
    alone = tiny_model(b).logits
    row = torch.cat([a, b], 1)
    segments = torch.tensor([[1] * 7 + [2] * 5])
    together = tiny_model(row, segments=segments).logits[:, 7:]
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
    leaky = tiny_model(row).logits[:, 7:]  # without segments b would read a
    assert not torch.allclose(leaky, alone, atol=1e-3)
    with pytest.raises(ValueError, match="segments"):
        tiny_model(row, segments=segments[:, :5])


def test_pretraining_packed_or_padded_follows_the_same_curve(tok, tiny_config):
    """pack="yes" and pack="no" train on the same pairs: the loss curves agree to float rounding."""
    curves = [[h["loss"] for h in pretrain(fresh_model(tiny_config), tok, config=quick(steps=8, pack=pack, bf16=False),
                                           progress=False).history] for pack in ("yes", "no")]
    assert curves[0] == pytest.approx(curves[1], abs=1e-4)
