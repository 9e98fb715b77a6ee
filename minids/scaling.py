"""Test-time scaling: buy accuracy with more computation at inference, no new training.

Two knobs, both from the R1 era:

  * **Majority voting** (self-consistency, Wang et al., arXiv 2203.11171).
    Sample N completions, take the most common answer. DeepSeek-R1-Zero went
    from 71.0% on AIME 2024 with one sample to 86.7% with a majority vote over
    64 (DeepSeek-R1, arXiv 2501.12948, Table 2). Voting helps when the right
    answer is the single most likely one but a lone sample often misses it;
    pass@N (is *any* of the N right?) is its ceiling.

        majority_vote(answers)      the vote, with a fixed tie rule
        sample_answers(...)         N sampled answers per problem, sampled once
        vote_curve / pass_curve     accuracy of the vote over the first N samples, N = 1..n_max
        majority_vote_curve(...)    sample, then vote_curve

  * **Budget forcing** (s1, arXiv 2501.19393). Control how long the model
    thinks by editing its decoding, not its weights:

        cap      after B think tokens, the think block is closed for it:
                 '</think><answer>' is appended and only the answer is generated;
        extend   until B think tokens are written, every token that would end
                 or break the think block (the tags and special tokens, above
                 all '</think>') gets probability zero, so the model must
                 keep writing. (s1 also appends the word "Wait" at that point;
                 our models never saw "Wait" in training, so we only suppress.)

        force_think(...)            the think block of each prompt under a budget
        budget_curve(...)           accuracy and think length against the budget B

    On the running-sum task the chain is complete after a fixed number of
    steps, so a cap below that length must cost accuracy (the last hop is
    missing), and an extension past it has nothing left to compute.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import torch

from .evaluate import rollout_stats
from .generate import generate, left_pad, sample
from .model import KVCache, Transformer
from .rewards import ANSWER_CLOSE, ANSWER_OPEN, SPECIALS, TAGS, THINK_CLOSE, THINK_OPEN, parse_completion, parse_number
from .tasks import Problem
from .tokenizer import Tokenizer

# ----------------------------------------------------------------------------- majority voting


def extract_answer(completion: str) -> int | None:
    """The integer inside <answer>…</answer> of a well-formed completion, else None (it cannot vote)."""
    parsed = parse_completion(completion)
    return parse_number(parsed.answer) if parsed.well_formed else None


def majority_vote(answers: Sequence[int | None]) -> int | None:
    """The most common answer; None answers (malformed completions) do not vote.

    Ties go to the tied answer that appeared first in the list, so the vote
    over the first N samples is deterministic and needs no random numbers.
    None if no answer is valid.

    >>> majority_vote([3, 5, 5, 3]), majority_vote([None, 7, 2]), majority_vote([None, None])
    (3, 7, None)
    """
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(a for a in answers if a is not None and counts[a] == best)


@torch.no_grad()
def sample_answers(model: Transformer, tokenizer: Tokenizer, problems: Sequence[Problem], n: int, *,
                   temperature: float = 1.0, seed: int = 0, max_new_tokens: int = 64) -> list[list[int | None]]:
    """Per problem, the answers of n sampled completions, in sampling order (None where malformed)."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    texts = rollout_stats(model, tokenizer, problems, temperature=temperature, samples=n,
                          max_new_tokens=max_new_tokens, seed=seed)["texts"]  # problem-major: n per problem
    return [[extract_answer(t) for t in texts[i * n:(i + 1) * n]] for i in range(len(problems))]


def _check(answers, golds):
    if len(answers) != len(golds) or not answers:
        raise ValueError(f"need one answer list per gold answer (and at least one), got {len(answers)} and "
                         f"{len(golds)}")
    n_max = min(len(a) for a in answers)
    if n_max < 1:
        raise ValueError("every problem needs at least one sampled answer")
    return n_max


def vote_curve(answers: Sequence[Sequence[int | None]], golds: Sequence[int]) -> dict[int, float]:
    """{N: fraction of problems whose majority vote over the first N answers is the gold}, N = 1..n_max.

    N = 1 is the accuracy of the first sample alone.
    """
    n_max = _check(answers, golds)
    return {N: sum(majority_vote(a[:N]) == g for a, g in zip(answers, golds)) / len(golds)
            for N in range(1, n_max + 1)}


def pass_curve(answers: Sequence[Sequence[int | None]], golds: Sequence[int]) -> dict[int, float]:
    """{N: fraction of problems where at least one of the first N answers is the gold} (pass@N)."""
    n_max = _check(answers, golds)
    return {N: sum(g in a[:N] for a, g in zip(answers, golds)) / len(golds) for N in range(1, n_max + 1)}


def sample_accuracy(answers: Sequence[Sequence[int | None]], golds: Sequence[int]) -> float:
    """Mean accuracy of a single sample, over every sample of every problem (a steadier N = 1 figure)."""
    _check(answers, golds)
    hits = [x == g for a, g in zip(answers, golds) for x in a]
    return sum(hits) / len(hits)


def majority_vote_curve(model: Transformer, tokenizer: Tokenizer, problems: Sequence[Problem], n_max: int,
                        temperature: float = 1.0, seed: int = 0, max_new_tokens: int = 64) -> dict[int, float]:
    """Sample n_max completions per problem once, then {N: majority-vote accuracy over the first N}.

    For pass@N as well, keep the samples: `answers = sample_answers(...)`, then
    `vote_curve(answers, golds)` and `pass_curve(answers, golds)`.
    """
    answers = sample_answers(model, tokenizer, problems, n_max, temperature=temperature, seed=seed,
                             max_new_tokens=max_new_tokens)
    return vote_curve(answers, [p.answer for p in problems])


# ----------------------------------------------------------------------------- budget forcing


def _end_ids(tokenizer: Tokenizer) -> list[int]:
    """Every token that would close or break a think block: the four tags and the special tokens."""
    return [tokenizer.encode(t, allowed_special="all")[0] for t in TAGS + SPECIALS]


@torch.no_grad()
def force_think(model: Transformer, tokenizer: Tokenizer, prompts: Sequence[str], max_think: int,
                min_think: int = 0, *, temperature: float = 0.0, seed: int | None = None) -> list[list[int]]:
    """Write the think block after each prompt under a budget -> per prompt its think token ids (no tags).

    The model continues `prompt<think>` token by token (KV-cached, greedy at
    temperature 0). It may close the block itself, with '</think>' or any other
    tag or special token, once it has written min_think tokens; before that
    those tokens are suppressed (logit -inf). At max_think tokens it is
    stopped. The closing token itself is not part of the result.
    """
    if not 0 <= min_think <= max_think:
        raise ValueError(f"need 0 <= min_think <= max_think, got min_think={min_think}, max_think={max_think}")
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
    device = model.device
    encoded = [tokenizer.encode(p + THINK_OPEN, allowed_special="all") for p in prompts]
    idx, key_mask = left_pad(encoded, tokenizer.pad_id, device)  # (B, P) each
    B, P = idx.shape
    if max_think == 0:
        return [[] for _ in prompts]
    if P + max_think > model.config.max_seq_len:
        raise ValueError(f"prompt of {P} tokens + max_think={max_think} exceeds the model's context length "
                         f"max_seq_len={model.config.max_seq_len}")
    ends = torch.tensor(_end_ids(tokenizer), device=device)
    gen = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    was_training = model.training
    model.eval()
    cache = KVCache(model.config, B, P + max_think, device=device)
    logits = model(idx, key_mask=key_mask, cache=cache).logits[:, -1]  # (B, V)
    still_open = torch.ones(B, dtype=torch.bool, device=device)
    written, kept = [], []
    for t in range(max_think):
        logits = logits.float()
        if t < min_think:
            logits[:, ends] = float("-inf")  # the block may not close yet
        if temperature == 0:
            nxt = logits.argmax(-1)  # (B,)
        else:
            nxt = sample((logits / temperature).softmax(-1), gen)
        still_open = still_open & ~torch.isin(nxt, ends)
        written.append(nxt)
        kept.append(still_open)
        if not still_open.any() or t + 1 == max_think:
            break
        logits = model(nxt[:, None], cache=cache).logits[:, -1]
    model.train(was_training)
    ids, mask = torch.stack(written, 1).cpu(), torch.stack(kept, 1).cpu()  # (B, L) each
    return [row[m].tolist() for row, m in zip(ids, mask)]


@torch.no_grad()
def _forced(model, tokenizer, problems, max_think, min_think, temperature, seed):
    """(think ids, answer texts) per problem: the forced think block, then '</think><answer>' and the answer."""
    think = force_think(model, tokenizer, [p.prompt for p in problems], max_think, min_think,
                        temperature=temperature, seed=seed)
    close = tokenizer.encode(THINK_CLOSE + ANSWER_OPEN, allowed_special="all")
    rows = [tokenizer.encode(p.prompt + THINK_OPEN, allowed_special="all") + t + close
            for p, t in zip(problems, think)]
    out = generate(model, tokenizer, rows, max_new_tokens=8, temperature=temperature, stop=(ANSWER_CLOSE,),
                   seed=seed)
    return think, out.texts


def budget_forced_completions(model: Transformer, tokenizer: Tokenizer, problems: Sequence[Problem],
                              max_think: int, min_think: int = 0, *, temperature: float = 0.0,
                              seed: int = 0) -> list[str]:
    """Completions written under a think budget: '<think>' forced block '</think><answer>' the model's answer.

    The think block comes from `force_think`; then '</think><answer>' is appended
    whatever the model would have written next, and the model writes the answer
    (up to '</answer>', at most 8 tokens).
    """
    think, answers = _forced(model, tokenizer, problems, max_think, min_think, temperature, seed)
    return [f"{THINK_OPEN}{tokenizer.decode(t)}{THINK_CLOSE}{ANSWER_OPEN}{a}" for t, a in zip(think, answers)]


def budget_curve(model: Transformer, tokenizer: Tokenizer, problems: Sequence[Problem], budgets: Sequence[int],
                 *, extend: bool = False, limit: int = 64, temperature: float = 0.0,
                 seed: int = 0) -> dict[int, dict[str, float]]:
    """Accuracy against a think budget B -> {B: {"accuracy", "think_length", "cut"}}.

    extend=False (cap):    the think block is closed after B tokens; shorter chains are left alone.
    extend=True (extend):  closing is suppressed until B tokens are written; after that the model
                           may close when it likes, and is stopped at max(B, limit) tokens.
    "think_length" is the mean number of think tokens written; "cut" the share of
    chains that were stopped by the cap (B, or the limit when extending).
    Greedy by default, so the curve shows the budget's effect and no sampling noise.
    """
    if not problems:
        raise ValueError("problems is empty")
    golds = [p.answer for p in problems]
    curve = {}
    for B in budgets:
        cap, floor = (max(B, limit), B) if extend else (B, 0)
        think, answers = _forced(model, tokenizer, problems, cap, floor, temperature, seed)
        right = [a.endswith(ANSWER_CLOSE) and parse_number(a.removesuffix(ANSWER_CLOSE)) == g
                 for a, g in zip(answers, golds)]
        curve[B] = {"accuracy": sum(right) / len(golds),
                    "think_length": sum(map(len, think)) / len(think),
                    "cut": sum(len(t) >= cap for t in think) / len(think)}
    return curve


def budget_figure(curves: dict[str, dict[int, dict[str, float]]], natural: float | None = None,
                  title: str = "Accuracy against the thinking budget"):
    """`budget_curve` results, one line per label; `natural` marks the model's own mean think length."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, curve in curves.items():
        budgets = list(curve)
        fig.add_trace(go.Scatter(x=budgets, y=[curve[b]["accuracy"] for b in budgets], mode="lines+markers",
                                 name=name, customdata=[curve[b]["think_length"] for b in budgets],
                                 hovertemplate="B=%{x}: accuracy %{y:.3f}, %{customdata:.1f} think tokens"
                                               "<extra>" + name + "</extra>"))
    if natural is not None:
        fig.add_vline(x=natural, line_dash="dot", line_color="#9ca3af",
                      annotation_text=f"own mean length {natural:.1f}")
    fig.update_layout(title=title, height=380, xaxis_title="think budget B (tokens)", yaxis_title="accuracy",
                      yaxis_range=[0, 1.02], margin=dict(t=50, b=40, l=60, r=20))
    return fig
