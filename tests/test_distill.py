"""Distillation: rejection-sampled traces, the answers-only control, a dense student, and fine-tuning that learns."""

import pytest
import torch

import minids.distill as distill
from minids.distill import answers_only, collect_traces, finetune, student_config
from minids.model import ModelConfig, Transformer
from minids.rewards import accuracy_reward
from minids.tasks import Problem

P = [Problem((7, 5, 9, 3), ("+", "-", "+")), Problem((4, 8), ("+",))]  # answers 6 and 2


def test_collect_traces_keeps_only_correct_well_formed(monkeypatch, tok):
    """Two samples per problem: only the right, well-formed ones survive, each ending in one <|eos|>."""
    texts = ["<think>7+5=2,2-9=3,3+3=6</think><answer>6</answer>",  # right
             "<think>7+5=2</think><answer>5</answer><|eos|>",  # wrong answer
             "<think>4+8=2</think>2<|eos|>",  # right number, broken format
             "<think>4+8=2</think><answer>2</answer><|eos|>"]  # right
    seen = {}

    def fake_rollouts(model, tokenizer, problems, **kw):
        seen.update(kw)
        return {"texts": texts}

    monkeypatch.setattr(distill, "rollout_stats", fake_rollouts)
    traces = collect_traces(None, tok, P, samples=2, temperature=0.7, seed=5)
    assert traces == [(P[0].prompt, texts[0] + "<|eos|>"), (P[1].prompt, texts[3])]
    assert seen["samples"] == 2 and seen["temperature"] == 0.7 and seen["seed"] == 5
    with pytest.raises(ValueError):
        collect_traces(None, tok, P, samples=0)


def test_collect_traces_from_a_real_model_are_all_correct(tiny_model, tok):
    traces = collect_traces(tiny_model, tok, P * 4, samples=2, max_new_tokens=20)
    answers = {p.prompt: p.answer for p in P}
    assert all(accuracy_reward(c, answers[prompt]) == 1.0 and c.endswith("<|eos|>") for prompt, c in traces)


def test_answers_only_strips_the_working():
    traces = [(P[0].prompt, "<think>7+5=2,2-9=3,3+3=6</think><answer>6</answer><|eos|>"),
              (P[1].prompt, "<think></think><answer>2</answer><|eos|>")]
    assert answers_only(traces) == [(P[0].prompt, "<think></think><answer>6</answer><|eos|>"),
                                    (P[1].prompt, "<think></think><answer>2</answer><|eos|>")]
    with pytest.raises(ValueError, match="well-formed"):
        answers_only([(P[0].prompt, "<think>7+5=2</think>6")])


def test_student_config_is_dense_and_smaller(tok):
    cfg = student_config(tok.vocab_size)
    assert cfg.n_dense_layers == cfg.n_layers and cfg.n_moe_layers == 0
    student = Transformer(cfg)
    assert student.moe_layers == []
    teacher = Transformer(ModelConfig(vocab_size=tok.vocab_size))
    assert student.num_params()["total"] < teacher.num_params()["active"] < teacher.num_params()["total"]
    assert student.num_params()["total"] == student.num_params()["active"]  # dense: every weight is used


def test_finetune_lowers_loss_and_is_reproducible(tok):
    docs = [(P[0].prompt, "<think>7+5=2,2-9=3,3+3=6</think><answer>6</answer><|eos|>"),
            (P[1].prompt, "<think>4+8=2</think><answer>2</answer><|eos|>")]
    cfg = student_config(tok.vocab_size, dim=32, n_layers=2, n_heads=2, inter_dim=64, max_seq_len=96)
    runs, seen = [], []
    for _ in range(2):
        torch.manual_seed(0)
        student = Transformer(cfg)
        runs.append(finetune(student, tok, docs, steps=40, batch_size=2, lr=1e-2, seed=0, progress=False,
                             callback=seen.append, eval_set=P, eval_every=25))
    history = runs[0]
    assert [r["step"] for r in history] == list(range(1, 41))
    assert history[-1]["loss"] < 0.2 * history[0]["loss"]
    assert [r["loss"] for r in runs[0]] == pytest.approx([r["loss"] for r in runs[1]])  # same seed, same numbers
    assert len(seen) == 80 and not student.training
    evaluated = [r["step"] for r in history if "eval/accuracy" in r]
    assert evaluated == [25, 40]  # every eval_every steps and at the last
    assert all(0 <= history[s - 1]["eval/accuracy"] <= 1 for s in evaluated)
    lrs = [r["lr"] for r in history]  # warm-up, then cosine decay to a tenth
    assert lrs[0] < lrs[3] == pytest.approx(1e-2) and lrs[-1] == pytest.approx(1e-3, rel=0.05)
    with pytest.raises(ValueError):
        finetune(student, tok, [], steps=1, progress=False)


def test_finetune_interrupted_and_resumed_equals_a_straight_run(tok, tmp_path):
    """Distillation uses the same resumable loop: Ctrl-C at step 5 saves; resuming reaches exactly the
    losses and weights of an uninterrupted run; other docs are refused."""
    from minids.loop import ResumeMismatch
    docs = [(P[0].prompt, "<think>7+5=2,2-9=3,3+3=6</think><answer>6</answer><|eos|>"),
            (P[1].prompt, "<think>4+8=2</think><answer>2</answer><|eos|>")]
    cfg = student_config(tok.vocab_size, dim=32, n_layers=2, n_heads=2, inter_dim=64, max_seq_len=96)

    def student(seed=0):
        torch.manual_seed(seed)
        return Transformer(cfg)

    kw = dict(steps=10, batch_size=2, lr=1e-2, seed=3, progress=False)
    straight_model = student()
    straight = finetune(straight_model, tok, docs, **kw)

    def ctrl_c_at_5(record):
        if record["step"] == 5:
            raise KeyboardInterrupt

    ckpt = tmp_path / "student.pt"
    first = finetune(student(), tok, docs, checkpoint=ckpt, callback=ctrl_c_at_5, **kw)
    assert [r["step"] for r in first] == [1, 2, 3, 4, 5]
    resumed_model = student(seed=99)
    resumed = finetune(resumed_model, tok, docs, checkpoint=ckpt, **kw)
    assert [r["loss"] for r in resumed] == [r["loss"] for r in straight]
    a, b = straight_model.state_dict(), resumed_model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ResumeMismatch, match="distill.docs"):
        finetune(student(), tok, docs[:1], checkpoint=ckpt, **kw)
    with pytest.raises(ResumeMismatch, match="distill.train.lr"):
        finetune(student(), tok, docs, checkpoint=ckpt, **{**kw, "lr": 2e-2})
