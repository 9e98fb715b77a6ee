"""Pretraining: next-token prediction on the synthetic task mix.

The loop is the classic one: sample a batch, forward, cross-entropy, backward,
clip gradients, AdamW step with warm-up then cosine decay. Three details matter
at this scale:

  * **Loss mask on the question** (`mask_question=True`). The operands of a
    question are uniformly random, so predicting them is pure noise; their loss
    drowns the signal from the working and the answer. Masking it out was
    measured to be the difference between learning the step skill and
    learning nothing but the tags.
  * **Reproducible and resumable batches.** Batch `s` is drawn from a random
    generator seeded by (seed, s), so a run resumed from a checkpoint at step s
    sees exactly the batches it would have seen, and reaches the same numbers.
  * **Expert balance.** After each optimiser step the aux-free bias is updated
    from that step's expert loads (`Transformer.update_balance_bias`).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, ClassVar

import torch

from .checkpoint import save_checkpoint
from .device import autocast, resolve_device
from .evaluate import answer_accuracy, working_accuracy
from .graphs import GraphedTrainStep, prepare_optimizer, set_lr
from .loop import defer_interrupt, resume_from, run_loop, say_interrupted  # noqa: F401 (re-exported)
from .model import Transformer
from .tasks import TaskConfig, eval_problems, sample_document
from .tokenizer import Tokenizer
from .validation import choice, device as device_field, flag, integer, number, rule, validate


@dataclass
class TrainConfig:
    steps: int = integer(3000, ge=1)  # optimiser steps (the step skill appeared at 1,000-1,500 on 4 of 4 seeds)
    batch_size: int = integer(32, ge=1)  # documents per step
    lr: float = number(1e-3, gt=0, lt=1)  # peak learning rate (2e-3 and 3e-3 learned the step skill later, or not at all)
    min_lr: float = number(1e-4, ge=0)  # floor of the cosine decay (at most lr)
    warmup_steps: int = integer(100, ge=0)  # linear warm-up from 0 to lr
    weight_decay: float = number(0.1, ge=0)  # AdamW decoupled weight decay (matrices only)
    grad_clip: float = number(1.0, gt=0)  # max global gradient norm
    mask_question: bool = flag(True)  # no loss on the (random) question tokens
    eval_every: int = integer(250, ge=0)  # steps between evaluations (0: never)
    eval_size: int = integer(128, ge=0)  # problems in the evaluation set
    checkpoint_every: int = integer(500, ge=0)  # steps between checkpoints when a path is given (0: only at the end)
    seed: int = integer(0, ge=0, lt=2**32)  # model init and data stream
    device: str = device_field("auto")  # "auto" | "cpu" | "cuda" | "mps"
    bf16: bool = flag(True)  # bf16 autocast on CUDA (ignored on CPU)
    cuda_graph: bool = flag(True)  # on CUDA, replay each step as a recorded CUDA graph (minids.graphs)
    pack: str = choice("auto", ("auto", "yes", "no"))  # several documents to a row (pack_batch), the same loss
    # for about half the compute; "auto" packs on a CPU, not on a GPU (at this size a padded step costs it the same)

    RULES: ClassVar[tuple] = (
        rule("min_lr", lambda c: c.min_lr <= c.lr, lambda c: f"at most lr ({c.lr:g})"),
        rule("eval_size", lambda c: c.eval_size >= 1 or not c.eval_every, "at least 1 when eval_every > 0"),
    )

    def __post_init__(self):
        validate(self)


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warm-up to lr, then cosine decay to min_lr at the last step."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def _encode(tokenizer: Tokenizer, docs: list[tuple[str, str]]) -> list[tuple[list[int], int]]:
    """(prompt, completion) pairs -> [(the document's token ids, the prompt's length)]."""
    out = []
    for prompt, completion in docs:
        p = tokenizer.encode(prompt, allowed_special="all")
        out.append((p + tokenizer.encode(completion, allowed_special="all"), len(p)))
    return out


def _place(row, start, seq, n_prompt, mask_question, idx, targets, loss_mask):
    """Write one document's inputs, targets and loss mask into `row` from position `start`; returns its length."""
    n = len(seq) - 1  # a document of n+1 tokens gives n (context, target) pairs
    idx[row, start:start + n] = torch.tensor(seq[:-1])
    targets[row, start:start + n] = torch.tensor(seq[1:])
    first = n_prompt - 1 if mask_question else 0  # target t is token t+1
    loss_mask[row, start + first:start + n] = True
    return n


def _empty(rows: int, T: int, pad_id: int):
    return (torch.full((rows, T), pad_id, dtype=torch.long), torch.full((rows, T), pad_id, dtype=torch.long),
            torch.zeros(rows, T, dtype=torch.bool))


def make_batch(tokenizer: Tokenizer, docs: list[tuple[str, str]], mask_question: bool = True):
    """(prompt, completion) pairs -> idx, targets, loss_mask, each (B, T), right-padded.

    targets[t] = idx[t+1]; loss_mask is False on padding and, with mask_question,
    on every target inside the prompt.
    """
    encoded = _encode(tokenizer, docs)
    idx, targets, loss_mask = _empty(len(encoded), max(len(seq) for seq, _ in encoded) - 1, tokenizer.pad_id)
    for i, (seq, n_prompt) in enumerate(encoded):
        _place(i, 0, seq, n_prompt, mask_question, idx, targets, loss_mask)
    return idx, targets, loss_mask


def pack_batch(tokenizer: Tokenizer, docs: list[tuple[str, str]], mask_question: bool = True):
    """The same (context, target) pairs as make_batch, several documents to a row.

    In a padded batch the longest document sets every row's length, and a
    pretraining batch is about 55% padding. Packing lays documents end to end
    in rows as long as the longest one (longest first, each into the first row
    with room) and numbers them in `segments` (0 = padding), so attention never
    crosses from one document into another (`Transformer.forward(segments=)`).
    The loss sees exactly the same pairs, so the gradient is the same, for
    about half the compute.

    -> idx, targets, loss_mask, segments, each (R, T) with R <= len(docs).
    """
    encoded = _encode(tokenizer, docs)
    T = max(len(seq) for seq, _ in encoded) - 1
    rows: list[list[int]] = []  # document indices in each row
    room: list[int] = []  # positions left in each row
    for i in sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0])):
        n = len(encoded[i][0]) - 1
        r = next((r for r, left in enumerate(room) if left >= n), None)
        if r is None:
            rows.append([])
            room.append(T)
            r = len(rows) - 1
        rows[r].append(i)
        room[r] -= n
    idx, targets, loss_mask = _empty(len(rows), T, tokenizer.pad_id)
    segments = torch.zeros(len(rows), T, dtype=torch.long)
    for r, members in enumerate(rows):
        start = 0
        for k, i in enumerate(members, start=1):
            n = _place(r, start, *encoded[i], mask_question, idx, targets, loss_mask)
            segments[r, start:start + n] = k
            start += n
    return idx, targets, loss_mask, segments


def make_optimizer(model: Transformer, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on norms' gains).

    On a GPU the update runs as one fused kernel over all parameters (fewer
    launches); on a CPU as one batched ("foreach") operation per step of the
    update, the same numbers as updating tensor by tensor, in less time.
    """
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    impl = {"fused": True} if model.device.type == "cuda" else {"foreach": True}
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95), **impl)


def load_stats(traces: list) -> dict:
    """Per MoE layer (RouteTraces of one pass): the fraction of routed slots each expert got, and its bias."""
    if not traces:
        return {"load": [], "bias": []}
    load = torch.stack([t.load.float() for t in traces])  # (L, E)
    load = load / load.sum(1, keepdim=True).clamp(min=1)
    bias = torch.stack([t.bias.float() for t in traces])  # (L, E)
    load, bias = torch.stack([load, bias]).tolist()  # one transfer from the device, not 2 per layer
    return {"load": load, "bias": bias}


def train_step(model: Transformer, opt, idx, targets, loss_mask, segments, *, grad_clip: float,
               bf16: bool = True, check_ids: bool = True):
    """One optimiser step on one batch: forward, backward, clip, AdamW, balance bias.

    segments (B, T): the documents of each row (`pack_batch`; for a padded
    batch, 1 on real tokens and 0 on padding), or None for rows with no padding.

    Returns the ModelOutput detached (`ModelOutput.detach`), without logits: the head
    runs only where the loss is (`Transformer.forward(loss_only=True)`).
    """
    with autocast(model.device, bf16):
        out = model(idx, targets, loss_mask=loss_mask, segments=segments, check_ids=check_ids, loss_only=True)
    opt.zero_grad(set_to_none=True)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    model.update_balance_bias()
    return out.detach()


def make_train_step(model: Transformer, opt, *, grad_clip: float, bf16: bool = True, pad_id: int = 0,
                    cuda_graph: bool = True):
    """The step a training loop calls: (idx, targets, loss_mask, segments) -> (ModelOutput, routing traces).

    On CUDA with cuda_graph it is `train_step` recorded once per batch shape and
    replayed (`minids.graphs.GraphedTrainStep`; batches are padded with pad_id);
    elsewhere `train_step` itself, run on the model's device.
    """
    step = partial(train_step, model, opt, grad_clip=grad_clip, bf16=bf16)
    if cuda_graph and model.device.type == "cuda":
        prepare_optimizer(opt)
        return GraphedTrainStep(model, opt, partial(step, check_ids=False), pad_id)
    device = model.device

    def run(*batch):
        out = step(*(None if t is None else t.to(device) for t in batch))
        return out, model.routing_trace()
    return run


@dataclass
class PretrainResult:
    model: Transformer
    history: list[dict] = field(default_factory=list)  # one record per step (and eval records)
    interrupted: bool = False


def pretrain(model: Transformer, tokenizer: Tokenizer, task: TaskConfig = TaskConfig(),
             config: TrainConfig = TrainConfig(), *, checkpoint: str | Path | None = None,
             resume: bool = True, callback: Callable[[dict], None] | None = None,
             progress: bool = True) -> PretrainResult:
    """Train `model` in place on the task mix; returns it with the per-step history.

    checkpoint: a file to save to every `checkpoint_every` steps and at the end.
        If it exists and resume=True, training continues from it (the same
        numbers as an uninterrupted run), provided it was made with the same
        model config, tokenizer, task and settings (`loop.resume_from`).
        Ctrl-C saves and returns cleanly.
    callback: called with each step's record (dict), e.g. to draw live plots.
    """
    device = resolve_device(config.device)
    model.to(device)
    model.train()
    opt = make_optimizer(model, config.lr, config.weight_decay)
    history: list[dict] = []
    start = 0
    meta = {"task": asdict(task), "train": asdict(config)}
    state = resume_from(checkpoint, model, tokenizer, meta, device, resume)
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        history, start = list(state["history"]), state["step"]

    def save(step):
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, tokenizer,
                            {**meta, "step": step, "history": history, "optimizer": opt.state_dict()})

    if config.cuda_graph and device.type == "cuda" and tokenizer.vocab_size > model.config.vocab_size:
        # a recorded step cannot stop to check the ids
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model's vocab_size is "
                         f"{model.config.vocab_size}")
    run_step = make_train_step(model, opt, grad_clip=config.grad_clip, bf16=config.bf16, pad_id=tokenizer.pad_id,
                               cuda_graph=config.cuda_graph)
    problems = eval_problems(config.eval_size, config=task) if config.eval_every else []  # on the task trained
    # the sequence-wise balance loss is defined per document, so with it each document keeps its own row
    pack = (config.pack == "yes" or (config.pack == "auto" and device.type == "cpu")) \
        and model.config.balance != "aux_loss"

    def batch(step):  # batch `step` depends on (seed, step) alone: a resumed run sees the same data
        rng = random.Random(config.seed * 1_000_003 + step)
        docs = [sample_document(rng, task) for _ in range(config.batch_size)]
        if pack:
            return pack_batch(tokenizer, docs, config.mask_question)
        idx, targets, mask = make_batch(tokenizer, docs, config.mask_question)
        return idx, targets, mask, (idx != tokenizer.pad_id).long()

    upcoming = batch(start) if start < config.steps else None

    def one_step(step):
        nonlocal upcoming
        t0 = time.perf_counter()
        idx, targets, mask, segments = upcoming
        n_tokens = int((segments != 0).sum())
        lr = lr_at(step, config)
        set_lr(opt, lr)
        out, traces = run_step(idx, targets, mask, segments)
        if step + 1 < config.steps:  # made while a GPU is still busy with this step
            upcoming = batch(step + 1)
        record = {"step": step + 1, "loss": out.ce_loss.item(), "lr": lr, **load_stats(traces)}
        if out.aux_loss is not None:
            record["aux_loss"] = out.aux_loss.item()
        if out.mtp_loss is not None:  # multi-token prediction, logged apart from "loss"
            record["mtp_loss"] = out.mtp_loss.item()
        record["tokens_per_s"] = n_tokens / (time.perf_counter() - t0)
        return record

    def evaluate(step, record):
        if config.eval_every and ((step + 1) % config.eval_every == 0 or step + 1 == config.steps):
            record["eval/working_accuracy"] = working_accuracy(model, tokenizer, problems)
            record["eval/acc_no_working"] = answer_accuracy(model, tokenizer, problems, k=0)
            model.train()

    interrupted = run_loop(one_step, start=start, steps=config.steps, history=history, save=save,
                           checkpoint_every=config.checkpoint_every, after=evaluate, callback=callback,
                           postfix=lambda r: {"loss": f"{r['loss']:.3f}", "tok_s": f"{r['tokens_per_s']:.0f}"},
                           desc="pretrain", progress=progress, checkpoint=checkpoint)
    model.eval()
    return PretrainResult(model=model, history=history, interrupted=interrupted)
