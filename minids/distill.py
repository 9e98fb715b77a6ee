"""Distillation: teach a smaller dense student from the RL model's own correct traces.

DeepSeek-R1 (arXiv 2501.12948, §2.4) did not run RL on its small models. It
sampled about 800k completions from the large RL-trained model, kept the ones
a rule or a judge accepted, and fine-tuned small *dense* models (Qwen, Llama)
on them with plain supervised learning; the distilled small models beat RL
run directly on the same small models. s1 (arXiv 2501.19393) showed how little
is needed: about 1,000 carefully chosen traces, fine-tuned in ~26 minutes on
16 H100s, and training on the same questions with the answers alone (no
reasoning trace) did much worse.

The same recipe, at toy scale:

    collect_traces   sample the teacher on fresh problems, keep only completions
                     the rule rewards accept (well formed *and* correct):
                     rejection sampling, so the student never copies a mistake
    answers_only     the control: the same problems, the think block emptied
                     ('<think></think><answer>6</answer><|eos|>')
    finetune         supervised fine-tuning on fixed (prompt, completion) pairs,
                     loss on the completion only (the question is masked, as
                     in pretraining), AdamW with warm-up and cosine decay
    student_config   a smaller model with dense feed-forward layers everywhere
                     (n_dense_layers = n_layers): no experts, as R1's students

The comparison that carries the lesson: one student architecture, one seed,
the same problems and the same number of steps; only whether the working is
in the data differs. Evaluate both with `evaluate.rollout_stats`.
"""

from __future__ import annotations

import random
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

import torch

from .checkpoint import content_digest, save_checkpoint
from .device import autocast
from .evaluate import rollout_stats
from .model import ModelConfig, Transformer
from .rewards import EOS, accuracy_reward, parse_completion
from .tasks import Problem
from .loop import resume_from, run_loop
from .tokenizer import Tokenizer
from .train import TrainConfig, lr_at, make_batch, make_optimizer
from .validation import Spec, check_value

Trace = tuple[str, str]  # (prompt, completion): ("<|bos|>Q:4+8=?", "<think>4+8=2</think><answer>2</answer><|eos|>")


def collect_traces(teacher: Transformer, tokenizer: Tokenizer, problems: Sequence[Problem], samples: int = 1,
                   temperature: float = 1.0, seed: int = 0, max_new_tokens: int = 64) -> list[Trace]:
    """Sample `samples` completions per problem; keep the well-formed, correct ones as (prompt, completion).

    Each kept completion ends in exactly one <|eos|> (the teacher may have
    stopped at </answer>), so the student also learns where to stop.
    Problems the teacher never gets right are simply missing from the result.
    """
    if not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    if not problems:
        return []
    out = rollout_stats(teacher, tokenizer, problems, temperature=temperature, samples=samples,
                        max_new_tokens=max_new_tokens, seed=seed)
    rows = [p for p in problems for _ in range(samples)]  # the order rollout_stats samples in
    return [(p.prompt, text.removesuffix(EOS) + EOS) for p, text in zip(rows, out["texts"])
            if accuracy_reward(text, p.answer) == 1.0]


def answers_only(traces: Sequence[Trace]) -> list[Trace]:
    """The same (prompt, completion) pairs with the working removed: '<think></think><answer>6</answer><|eos|>'."""
    out = []
    for prompt, completion in traces:
        parsed = parse_completion(completion)
        if not parsed.well_formed:
            raise ValueError(f"not a well-formed completion: {completion!r} ({parsed.error})")
        out.append((prompt, f"<think></think><answer>{parsed.answer}</answer>{EOS}"))
    return out


def student_config(vocab_size: int, dim: int = 64, n_layers: int = 4, n_heads: int = 4, inter_dim: int = 256,
                   max_seq_len: int = 128) -> ModelConfig:
    """A small dense ModelConfig: every layer has a plain feed-forward block (n_dense_layers = n_layers)."""
    return ModelConfig(vocab_size=vocab_size, max_seq_len=max_seq_len, dim=dim, n_layers=n_layers,
                       n_heads=n_heads, n_dense_layers=n_layers, inter_dim=inter_dim)


def finetune(student: Transformer, tokenizer: Tokenizer, docs: Sequence[Trace], steps: int, batch_size: int = 32,
             lr: float = 3e-3, seed: int = 0, callback: Callable[[dict], None] | None = None,
             progress: bool = True, *, min_lr: float | None = None, warmup_steps: int | None = None,
             eval_set: Sequence[Problem] = (), eval_every: int = 0, checkpoint: str | Path | None = None,
             resume: bool = True, checkpoint_every: int = 0) -> list[dict]:
    """Supervised fine-tuning of `student` in place on fixed (prompt, completion) docs -> per-step history.

    Each step draws `batch_size` docs at random (a generator seeded by `seed`,
    so the same seed gives the same batches); the loss is the cross-entropy on
    the completion tokens only. The learning rate warms up linearly over
    `warmup_steps` (default: a tenth of the steps) and decays by a cosine to
    `min_lr` (default lr / 10): the pretraining schedule, `train.lr_at`, with
    its AdamW settings (`train.make_optimizer`, weight decay 0.1, gradients
    clipped at norm 1).
    Each history record: {"step", "loss", "lr"}; every `eval_every` steps (and at
    the last) it also holds "eval/accuracy", "eval/format" and "eval/think_length":
    one sampled completion per problem of `eval_set` (temperature 1, `rollout_stats`).
    `callback` gets each record as it is made, e.g. to draw a live curve.
    checkpoint: saved every `checkpoint_every` steps (0: only at the end) and on
    Ctrl-C; an existing one is resumed (the same numbers as a straight run) if
    it was made with the same student, tokenizer, docs and settings (`minids.loop`).
    """
    if not docs:
        raise ValueError("docs is empty: nothing to fine-tune on")
    check_value(eval_every, Spec("int", ge=0), "eval_every")
    check_value(checkpoint_every, Spec("int", ge=0), "checkpoint_every")
    config = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, min_lr=lr / 10 if min_lr is None else min_lr,
                         warmup_steps=max(1, steps // 10) if warmup_steps is None else warmup_steps,
                         eval_every=0, seed=seed)  # validates the numbers; lr_at reads the schedule from it
    device = student.device
    opt = make_optimizer(student, config.lr, config.weight_decay)
    rng = random.Random(seed)
    history: list[dict] = []
    start = 0
    meta = {"distill": {"train": asdict(config), "eval_every": eval_every,
                        "docs": content_digest({"docs": [list(d) for d in docs]}),
                        "eval_set": [p.prompt for p in eval_set]}}
    state = resume_from(checkpoint, student, tokenizer, meta, device, resume, needs=("step", "history", "optimizer", "rng"))
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        history, start = list(state["history"]), state["step"]
        version, internal, gauss = state["rng"]
        rng.setstate((version, tuple(internal), gauss))

    def save(step):
        if checkpoint is not None:
            save_checkpoint(checkpoint, student, tokenizer, {**meta, "step": step, "history": history,
                                                              "optimizer": opt.state_dict(), "rng": list(rng.getstate())})

    def one_step(step):
        batch = [docs[rng.randrange(len(docs))] for _ in range(batch_size)]
        idx, targets, mask = (t.to(device) for t in make_batch(tokenizer, batch, mask_question=True))
        for group in opt.param_groups:
            group["lr"] = lr_at(step, config)
        with autocast(device, config.bf16):
            out = student(idx, targets, loss_mask=mask, key_mask=idx != tokenizer.pad_id)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), config.grad_clip)
        opt.step()
        student.update_balance_bias()  # a no-op for a dense student; keeps an MoE student balanced
        return {"step": step + 1, "loss": out.ce_loss.item(), "lr": opt.param_groups[0]["lr"]}

    def evaluate(step, record):
        if eval_set and eval_every and ((step + 1) % eval_every == 0 or step + 1 == steps):
            stats = rollout_stats(student, tokenizer, eval_set, temperature=1.0, seed=seed)
            record.update({f"eval/{k}": stats[k] for k in ("accuracy", "format", "think_length")})
            student.train()

    student.train()
    run_loop(one_step, start=start, steps=steps, history=history, save=save, checkpoint_every=checkpoint_every,
             after=evaluate, callback=callback, postfix=lambda r: {"loss": f"{r['loss']:.3f}"}, desc="fine-tune",
             progress=progress, checkpoint=checkpoint)
    student.eval()
    return history


def history_figure(histories: dict[str, list[dict]], title: str = "Fine-tuning the student"):
    """Training loss and sampled accuracy (the "eval/" records) against step, one colour per run."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss on the completion (nats per token)",
                                                        "sampled accuracy on held-out problems"))
    palette = ["#636efa", "#ef553b", "#00cc96", "#ab63fa"]
    for i, (name, history) in enumerate(histories.items()):
        color = palette[i % len(palette)]
        fig.add_trace(go.Scatter(x=[r["step"] for r in history], y=[r["loss"] for r in history], name=name,
                                 line=dict(color=color), legendgroup=name), 1, 1)
        evals = [r for r in history if "eval/accuracy" in r]
        fig.add_trace(go.Scatter(x=[r["step"] for r in evals], y=[r["eval/accuracy"] for r in evals], name=name,
                                 mode="lines+markers", line=dict(color=color), legendgroup=name,
                                 showlegend=False), 1, 2)
    fig.update_xaxes(title_text="fine-tuning step")
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    fig.update_layout(title=title, height=380, margin=dict(t=70, b=40, l=60, r=20))
    return fig
