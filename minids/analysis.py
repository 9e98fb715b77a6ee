"""The perplexity bridge: how written steps carry the model from question to answer.

Why chain of thought helps, measured in nats. For our running-sum task the
answer given the question alone is a leap: a small model cannot add four
digits mod 10 in one forward pass, so its best guess is close to uniform over
the ten digits, a negative log-likelihood (NLL) near ln 10 = 2.30 nats. Given a
complete, correct chain ("7+5=2,2-9=3,3+3=6") the answer is just the last
result copied out, nearly free. In between, each written step is a short hop
the model *can* take, and each one it writes shrinks what is left to guess.
The chain is a bridge of low-surprise tokens over a gap the model cannot jump.
(The idea follows the "reasoning as a low-entropy path" reading of
chain-of-thought: the working spreads one improbable jump over many probable
steps.)

What this module measures, all by teacher forcing (no sampling unless said):

    answer_nll(context)     -log p(gold answer | prompt <think>context</think><answer>),
                            summed over the answer's tokens
      nll_given_query       context = ""                  (the jump)
      nll_given_k_steps     the first k gold steps        (part of the bridge)
      nll_given_gold_chain  every gold step               (the whole bridge)
      nll_given_own_chain   what the model itself wrote   (its own bridge; may be wrong)
      nll_curve             k = 0..n for one problem      (the NLL falling step by step)
    surprisal / entropy_along   per-token -log p and predictive entropy along any text
    bridge_table            the three means, grouped by number of steps
    empty_think_intervention    the answer distribution over digits with and without the chain

Every scored document is one the model could have seen in pretraining:

    <|bos|>Q:7+5-9+3=?<think>7+5=2,2-9=3,3+3=6</think><answer>6</answer>
    '-----prompt------''------ context -------''--- prefix end ---'^ scored

The context is encoded as plain text (tags inside it are not recognised), the
same way `evaluate.teacher_forced_ids` builds the gold document; digits are
single tokens, so the pieces join into exactly the ids the whole text would get.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections import defaultdict
from typing import Callable, Iterator, Sequence

import torch

from .generate import generate, left_pad
from .model import Transformer
from .rewards import ANSWER_OPEN, SPECIALS, TAGS, THINK_CLOSE, THINK_OPEN, parse_completion
from .tasks import Problem
from .tokenizer import Tokenizer

CHANCE_NLL = math.log(10)  # nats: a uniform guess over the ten digits
_ANY_TAG = re.compile("|".join(re.escape(t) for t in TAGS + SPECIALS))


# ----------------------------------------------------------------------------- scoring machinery

@contextlib.contextmanager
def _eval_mode(model: Transformer):
    """Eval mode inside the block, the caller's mode restored after it."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _log_probs(model: Transformer, tokenizer: Tokenizer, rows: Sequence[list[int]],
               batch_size: int) -> Iterator[torch.Tensor]:
    """Ragged token-id rows -> per row (L, V) log p(next token | tokens up to t), fp32 on CPU.

    Rows are left-padded (and the padding masked out) in batches, as generation does.
    """
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        idx, key_mask = left_pad(list(chunk), tokenizer.pad_id, model.device)  # (B, P) each
        logp = model(idx, key_mask=key_mask).logits.float().log_softmax(-1).cpu()  # (B, P, V)
        P = idx.shape[1]
        for i, row in enumerate(chunk):
            yield logp[i, P - len(row):]  # (L, V): the real positions of row i


def _token_log_probs(logp: torch.Tensor, ids: list[int]) -> torch.Tensor:
    """(L, V) log-probabilities and the L ids -> (L-1,) log p(ids[t] | ids[:t]) for t = 1..L-1."""
    return logp[:-1].gather(1, torch.tensor(ids[1:])[:, None]).squeeze(1)


def _answer_rows(tokenizer: Tokenizer, problems: Sequence[Problem],
                 contexts: Sequence[str]) -> list[tuple[list[int], int]]:
    """Per problem: ids of prompt<think>context</think><answer>{gold}, and where the gold starts."""
    rows = []
    for p, context in zip(problems, contexts):
        prefix = (tokenizer.encode(p.prompt + THINK_OPEN, allowed_special="all")
                  + tokenizer.encode(context)
                  + tokenizer.encode(THINK_CLOSE + ANSWER_OPEN, allowed_special="all"))
        rows.append((prefix + tokenizer.encode(str(p.answer)), len(prefix)))
    return rows


def _resolve_contexts(problems: Sequence[Problem], context) -> list[str]:
    """A list of strings (one per problem) or a callable problem -> str, as a list."""
    if callable(context):
        return [context(p) for p in problems]
    if isinstance(context, str):
        raise TypeError("context must be a list of strings (one per problem) or a callable problem -> str")
    context = list(context)
    if len(context) != len(problems):
        raise ValueError(f"got {len(context)} contexts for {len(problems)} problems")
    return context


# ----------------------------------------------------------------------------- the answer's NLL

@torch.no_grad()
def answer_nll(model: Transformer, tokenizer: Tokenizer, problems: Sequence[Problem],
               context: Sequence[str] | Callable[[Problem], str], batch_size: int = 256) -> list[float]:
    """Per problem, -log p(gold answer tokens | prompt<think>{context}</think><answer>), in nats.

    Summed over the answer's tokens (one token for mod-10 answers). `context`
    is one string per problem or a callable problem -> str.
    """
    rows = _answer_rows(tokenizer, problems, _resolve_contexts(problems, context))
    with _eval_mode(model):
        logps = _log_probs(model, tokenizer, [ids for ids, _ in rows], batch_size)
        # token t is scored by position t-1, so the answer's tokens start at index start-1
        return [-_token_log_probs(logp, ids)[start - 1:].sum().item()
                for logp, (ids, start) in zip(logps, rows)]


def gold_think(problem: Problem, k: int | None = None) -> str:
    """The first k gold steps exactly as the gold document writes them (all if None)."""
    return parse_completion(problem.completion(k)).think


def nll_given_query(model: Transformer, tokenizer: Tokenizer, problems: Sequence[Problem],
                    batch_size: int = 256) -> list[float]:
    """Answer NLL after an empty think block: the jump with no bridge."""
    return answer_nll(model, tokenizer, problems, lambda p: "", batch_size)


def nll_given_k_steps(model: Transformer, tokenizer: Tokenizer, problems: Sequence[Problem], k: int,
                      batch_size: int = 256) -> list[float]:
    """Answer NLL after the first k gold steps (a problem with fewer steps gets all of its own)."""
    if not isinstance(k, int) or k < 0:
        raise ValueError(f"k must be a non-negative integer, got {k!r}")
    return answer_nll(model, tokenizer, problems, lambda p: gold_think(p, min(k, p.n_steps)), batch_size)


def nll_given_gold_chain(model: Transformer, tokenizer: Tokenizer, problems: Sequence[Problem],
                         batch_size: int = 256) -> list[float]:
    """Answer NLL after every gold step: the whole bridge, built for the model."""
    return answer_nll(model, tokenizer, problems, gold_think, batch_size)


def nll_curve(model: Transformer, tokenizer: Tokenizer, problem: Problem) -> list[float]:
    """One problem's answer NLL after k = 0, 1, ..., n_steps gold steps (one batch)."""
    ks = range(problem.n_steps + 1)
    return answer_nll(model, tokenizer, [problem] * len(ks), [gold_think(problem, k) for k in ks])


def think_text(completion: str) -> str:
    """The working inside a completion's think block, also when the completion is malformed.

    Well formed: exactly what `parse_completion` finds. Otherwise the text after
    the first <think> up to the next tag or special token ('' if there is no <think>),
    so that the rebuilt document holds one clean think block.
    """
    parsed = parse_completion(completion)
    if parsed.well_formed:
        return parsed.think
    if THINK_OPEN not in completion:
        return ""
    return _ANY_TAG.split(completion.split(THINK_OPEN, 1)[1], maxsplit=1)[0]


@torch.no_grad()
def own_chains(model: Transformer, tokenizer: Tokenizer, problems: Sequence[Problem], *,
               temperature: float = 0.0, seed: int = 0, max_new_tokens: int = 64,
               batch_size: int = 256) -> list[str]:
    """The think text of the model's own completion for each prompt (greedy by default)."""
    chains = []
    for i, start in enumerate(range(0, len(problems), batch_size)):
        chunk = problems[start:start + batch_size]
        out = generate(model, tokenizer, [p.prompt for p in chunk], max_new_tokens=max_new_tokens,
                       temperature=temperature, seed=seed + i)
        chains += [think_text(text) for text in out.texts]
    return chains


def nll_given_own_chain(model: Transformer, tokenizer: Tokenizer, problems: Sequence[Problem], *,
                        temperature: float = 0.0, seed: int = 0, max_new_tokens: int = 64,
                        batch_size: int = 256) -> tuple[list[float], list[str]]:
    """(NLL of the *gold* answer after the model's own chain, the chains).

    A correct own chain should bring the NLL down as far as the gold one does;
    a wrong one leaves the gold answer surprising (often more than chance,
    because the model is then confident about the wrong digit).
    """
    chains = own_chains(model, tokenizer, problems, temperature=temperature, seed=seed,
                        max_new_tokens=max_new_tokens, batch_size=batch_size)
    return answer_nll(model, tokenizer, problems, chains, batch_size), chains


def perplexity(nll: float, n_tokens: int = 1) -> float:
    """exp(nll / n_tokens): the effective number of equally likely choices (10 = chance over digits)."""
    return math.exp(nll / n_tokens)


# ----------------------------------------------------------------------------- along a document

@torch.no_grad()
def _along(model: Transformer, tokenizer: Tokenizer, text: str) -> tuple[list[int], torch.Tensor]:
    ids = tokenizer.encode(text, allowed_special="all")
    if not ids:
        raise ValueError("text is empty")
    with _eval_mode(model):
        return ids, next(_log_probs(model, tokenizer, [ids], 1))  # (L, V)


def surprisal(model: Transformer, tokenizer: Tokenizer, text: str) -> tuple[list[str], list[float]]:
    """(pieces, nats): each token of `text` and its surprisal -log p(token | everything before).

    Special tokens in the text are recognised. The first token has no prefix to
    be predicted from, so its surprisal is NaN (kept, so the two lists align).
    """
    ids, logp = _along(model, tokenizer, text)
    return tokenizer.pieces(ids), [math.nan] + (-_token_log_probs(logp, ids)).tolist()


def entropy_along(model: Transformer, tokenizer: Tokenizer, text: str) -> tuple[list[str], list[float]]:
    """(pieces, nats): for each token, the entropy of the distribution it was drawn from.

    Aligned with `surprisal` (first entry NaN): surprisal is what the token
    cost, entropy what a token at that place costs on average. A chain of
    thought is a low-entropy path when both stay small until the answer.
    """
    ids, logp = _along(model, tokenizer, text)
    entropy = -(logp[:-1].exp() * logp[:-1]).sum(-1)  # (L-1,)
    return tokenizer.pieces(ids), [math.nan] + entropy.tolist()


# ----------------------------------------------------------------------------- summaries

def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def bridge_table(model: Transformer, tokenizer: Tokenizer, problems: Sequence[Problem], *,
                 max_new_tokens: int = 64, batch_size: int = 256) -> dict[int, dict[str, float]]:
    """Mean answer NLL given the query / the gold chain / the model's own greedy chain, by difficulty.

    -> {n_steps: {"query": x, "gold_chain": y, "own_chain": z, "count": c}}, sorted by n_steps.
    """
    columns = {"query": nll_given_query(model, tokenizer, problems, batch_size),
               "gold_chain": nll_given_gold_chain(model, tokenizer, problems, batch_size),
               "own_chain": nll_given_own_chain(model, tokenizer, problems, max_new_tokens=max_new_tokens,
                                                batch_size=batch_size)[0]}
    groups = defaultdict(list)  # n_steps -> indices of its problems
    for i, p in enumerate(problems):
        groups[p.n_steps].append(i)
    return {n: {**{name: _mean([col[i] for i in idx]) for name, col in columns.items()}, "count": len(idx)}
            for n, idx in sorted(groups.items())}


@torch.no_grad()
def empty_think_intervention(model: Transformer, tokenizer: Tokenizer, problem: Problem) -> dict:
    """The answer distribution over the digits 0-9 after an empty think block vs after the gold chain.

    Empty think is the jump the model must guess across; the gold chain is the
    bridge. Each distribution is renormalised over the ten digit tokens (so it
    sums to 1); "digit_mass" keeps how much probability the digits had before.
    -> {"empty_think": [10 floats], "gold_chain": [10 floats], "gold": int, "digit_mass": {...}}
    """
    if not 0 <= problem.answer <= 9:
        raise ValueError(f"the answer must be a single digit, got {problem.answer}")
    digits = torch.tensor([tokenizer.encode(str(d))[0] for d in range(10)])
    rows = _answer_rows(tokenizer, [problem, problem], ["", gold_think(problem)])
    out = {"gold": problem.answer, "digit_mass": {}}
    with _eval_mode(model):
        for name, logp, (_, start) in zip(("empty_think", "gold_chain"),
                                          _log_probs(model, tokenizer, [ids for ids, _ in rows], 2), rows):
            probs = logp[start - 1, digits].exp()  # (10,): the position that predicts the answer
            out[name] = (probs / probs.sum()).tolist()
            out["digit_mass"][name] = probs.sum().item()
    return out
