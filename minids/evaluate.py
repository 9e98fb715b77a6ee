"""Measuring the model on the task: with given working, and on its own rollouts.

Two questions, kept apart on purpose:
  * `answer_accuracy(k)`: handed the first k steps of the gold working, does the
    model answer correctly (greedy)? With k = all steps this is the *skill*
    pretraining must install before RL can amplify it (the gate before RL).
  * `rollout_stats`: left to write its own completion, how often is it right,
    well formed, and how long does it think? This is what RL changes.
  * `pass_at_k`: with n samples of a problem, c of them right, the chance that
    at least one of k samples is right. A curve over k tells "sharpening"
    (RL raises pass@1 towards the base's pass@k) from "extension" (RL's
    pass@k above the base's at large k: answers the base could not sample).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from .generate import generate
from .model import Transformer
from .rewards import parse_completion, parse_number
from .tasks import Problem
from .tokenizer import Tokenizer


def _batches(items, size):
    for i in range(0, len(items), size):
        yield items[i:i + size]


@torch.no_grad()
def answer_accuracy(model: Transformer, tokenizer: Tokenizer, problems: Sequence[Problem],
                    k: int | None = None, batch_size: int = 256) -> float:
    """Fraction answered correctly (greedy) when handed the first k gold steps (None: all)."""
    if not problems:
        return float("nan")
    correct = 0
    for chunk in _batches(list(problems), batch_size):
        prompts = [p.prompt + p.completion(k, eos=False).split("<answer>")[0] + "<answer>" for p in chunk]
        out = generate(model, tokenizer, prompts, max_new_tokens=4, temperature=0, stop=("</answer>",))
        for p, text in zip(chunk, out.texts):
            correct += parse_number(text.removesuffix("</answer>")) == p.answer
    return correct / len(problems)


def teacher_forced_ids(tokenizer: Tokenizer, problem: Problem) -> tuple[list[int], list[int]]:
    """The gold document as ids, and the positions of every result token (each step's and the answer's).

    Digits are always tokens of their own, so pieces encoded separately join
    into exactly the ids the whole document would get.
    """
    ids = tokenizer.encode(problem.prompt + "<think>", allowed_special="all")
    targets = []
    for i, step in enumerate(problem.steps):
        lhs, result = step.split("=")
        ids += tokenizer.encode(lhs + "=")
        targets += range(len(ids), len(ids) + len(tokenizer.encode(result)))
        ids += tokenizer.encode(result) + (tokenizer.encode(",") if i < problem.n_steps - 1 else [])
    ids += tokenizer.encode("</think><answer>", allowed_special="all")
    targets += range(len(ids), len(ids) + len(tokenizer.encode(str(problem.answer))))
    ids += tokenizer.encode(f"{problem.answer}</answer>", allowed_special="all")
    return ids, targets


@torch.no_grad()
def working_accuracy(model: Transformer, tokenizer: Tokenizer, problems: Sequence[Problem]) -> float:
    """Fraction of problems whose every step result *and* answer the model predicts (argmax),
    reading the gold working up to that point: can it write a complete, correct chain?

    This is the skill RL needs to find in the base model; it is the gate before RL.
    (Accuracy given the whole working, `answer_accuracy(k=None)`, only asks it to copy
    the last result, which a model learns long before it can do the steps.)
    """
    if not problems:
        return float("nan")
    docs = [teacher_forced_ids(tokenizer, p) for p in problems]
    T = max(len(ids) for ids, _ in docs)
    idx = torch.full((len(docs), T), tokenizer.pad_id, dtype=torch.long)
    for i, (ids, _) in enumerate(docs):
        idx[i, :len(ids)] = torch.tensor(ids)
    was_training = model.training
    model.eval()
    pred = model(idx.to(model.device)).logits.argmax(-1).cpu()  # (B, T): prediction for position t+1
    model.train(was_training)
    ok = [all(pred[i, t - 1] == idx[i, t] for t in targets) for i, (_, targets) in enumerate(docs)]
    return sum(ok) / len(ok)


def think_length(tokenizer: Tokenizer, completion: str) -> int:
    """Tokens inside <think>…</think> of a completion (0 when it has no well-formed think block)."""
    think = parse_completion(completion).think
    if think is None:
        # fall back to whatever precedes </think>, so malformed completions still have a length
        if "<think>" not in completion:
            return 0
        think = completion.split("<think>", 1)[1].split("</think>", 1)[0]
    return len(tokenizer.encode(think))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k) (Chen et al., 2021).

    >>> pass_at_k(4, 1, 1), pass_at_k(4, 1, 2), pass_at_k(4, 0, 4), pass_at_k(4, 1, 4)
    (0.25, 0.5, 0.0, 1.0)
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def pass_at_k_curve(correct: Sequence[Sequence[bool]], ks: Sequence[int]) -> dict[int, float]:
    """Per-problem lists of sample correctness -> {k: pass@k averaged over problems}."""
    if not correct:
        raise ValueError("pass_at_k_curve needs at least one problem")
    return {k: sum(pass_at_k(len(c), sum(map(bool, c)), k) for c in correct) / len(correct) for k in ks}


def is_gold_chain(problem: Problem, completion: str) -> bool:
    """Is the completion's think block exactly the gold working (every step, nothing else)?"""
    return parse_completion(completion).think == ",".join(problem.steps)


@torch.no_grad()
def rollout_stats(model: Transformer, tokenizer: Tokenizer, problems: Sequence[Problem], *,
                  temperature: float = 1.0, samples: int = 1, max_new_tokens: int = 64,
                  seed: int = 0, batch_size: int = 256) -> dict:
    """Sample `samples` completions per problem; accuracy, format rate, mean think length (tokens).

    Also per sample (problem-major, `samples` in a row): "correct" and "gold" (exactly the gold chain).
    """
    rows = [p for p in problems for _ in range(samples)]
    acc, fmt, think, texts, gold = [], [], [], [], []
    for i, chunk in enumerate(_batches(rows, batch_size)):
        out = generate(model, tokenizer, [p.prompt for p in chunk], max_new_tokens=max_new_tokens,
                       temperature=temperature, seed=seed + i)
        for p, text in zip(chunk, out.texts):
            parsed = parse_completion(text)
            fmt.append(float(parsed.well_formed))
            acc.append(float(parsed.well_formed and parse_number(parsed.answer) == p.answer))
            think.append(think_length(tokenizer, text))
            texts.append(text)
            gold.append(is_gold_chain(p, text))
    n = max(1, len(rows))
    return {"accuracy": sum(acc) / n, "format": sum(fmt) / n, "think_length": sum(think) / n,
            "texts": texts, "correct": [a > 0 for a in acc], "gold": gold, "think_lengths": think}
