"""The perplexity bridge: answer NLLs by hand, their endpoints, per-token surprisal, and the bridge itself."""

import math

import pytest
import torch

from minids.analysis import (CHANCE_NLL, _answer_rows, answer_nll, bridge_table, empty_think_intervention,
                             entropy_along, gold_think, nll_curve, nll_given_gold_chain, nll_given_k_steps,
                             nll_given_own_chain, nll_given_query, perplexity, surprisal, think_text)
from minids.evaluate import teacher_forced_ids
from minids.model import Transformer
from minids.tasks import Problem, TaskConfig, eval_problems
from minids.train import TrainConfig, pretrain

P3 = Problem((7, 5, 9, 3), ("+", "-", "+"))  # 7+5=2, 2-9=3, 3+3=6
P1 = Problem((4, 8), ("+",))  # 4+8=2
BIG = Problem((7, 5, 9), ("+", "+"), modulus=None)  # answer 21: two answer tokens
PROBLEMS = [P3, P1, BIG]


def hand_answer_nll(model, tok, problem, context):
    """The definition, spelled out on one unpadded document."""
    ids = tok.encode(f"{problem.prompt}<think>{context}</think><answer>{problem.answer}", allowed_special="all")
    n_answer = len(tok.encode(str(problem.answer)))
    logp = model(torch.tensor([ids])).logits[0].log_softmax(-1)  # (T, V)
    return -sum(logp[t - 1, ids[t]].item() for t in range(len(ids) - n_answer, len(ids)))


# ----------------------------------------------------------------------------- answer NLL

def test_answer_nll_matches_hand_computation(tiny_model, tok):
    """Batched (left-padded) scoring equals summing -log_softmax at the answer tokens by hand,
    for one- and two-token answers; the model's training mode is restored."""
    contexts = ["7+5=2,2-9=3", "", "7+5=12"]
    tiny_model.train()
    got = answer_nll(tiny_model, tok, PROBLEMS, contexts)
    assert tiny_model.training
    tiny_model.eval()
    with torch.no_grad():
        want = [hand_answer_nll(tiny_model, tok, p, c) for p, c in zip(PROBLEMS, contexts)]
    assert got == pytest.approx(want, abs=1e-4)
    assert all(x > 0 for x in got)
    # a callable context is the same as the list it produces, and batch size does not matter
    assert answer_nll(tiny_model, tok, PROBLEMS, lambda p: contexts[PROBLEMS.index(p)],
                      batch_size=1) == pytest.approx(got, abs=1e-4)


def test_answer_nll_rejects_mismatched_contexts(tiny_model, tok):
    with pytest.raises(ValueError, match="2 contexts for 3 problems"):
        answer_nll(tiny_model, tok, PROBLEMS, ["", ""])
    with pytest.raises(TypeError):
        answer_nll(tiny_model, tok, PROBLEMS, "one string")
    assert answer_nll(tiny_model, tok, [], []) == []


def test_gold_chain_document_is_the_teacher_forced_document(tok):
    """The scored gold document is exactly evaluate.teacher_forced_ids up to the answer."""
    for p in PROBLEMS:
        (ids, start), = _answer_rows(tok, [p], [gold_think(p)])
        gold_ids, targets = teacher_forced_ids(tok, p)
        assert ids == gold_ids[:-1]  # everything but the closing </answer>
        assert start == targets[-len(tok.encode(str(p.answer)))]


def test_k_steps_endpoints_are_query_and_gold_chain(tiny_model, tok):
    """k = 0 is the empty think block, k = n (or more) the whole gold chain; nll_curve agrees."""
    query = nll_given_query(tiny_model, tok, PROBLEMS)
    gold = nll_given_gold_chain(tiny_model, tok, PROBLEMS)
    assert nll_given_k_steps(tiny_model, tok, PROBLEMS, 0) == pytest.approx(query, abs=1e-5)
    assert nll_given_k_steps(tiny_model, tok, [P3], 3) == pytest.approx(gold[:1], abs=1e-5)
    assert nll_given_k_steps(tiny_model, tok, PROBLEMS, 3) == pytest.approx(gold, abs=1e-5)  # clamped
    curve = nll_curve(tiny_model, tok, P3)
    assert len(curve) == P3.n_steps + 1
    assert curve[0] == pytest.approx(query[0], abs=1e-4) and curve[-1] == pytest.approx(gold[0], abs=1e-4)
    assert curve[1] == pytest.approx(answer_nll(tiny_model, tok, [P3], ["7+5=2"])[0], abs=1e-4)
    with pytest.raises(ValueError):
        nll_given_k_steps(tiny_model, tok, PROBLEMS, -1)


def test_perplexity():
    assert perplexity(CHANCE_NLL) == pytest.approx(10.0)
    assert perplexity(0.0) == 1.0
    assert perplexity(3.0, n_tokens=2) == pytest.approx(math.exp(1.5))


# ----------------------------------------------------------------------------- own chains

@pytest.mark.parametrize("completion, think", [
    ("<think>7+5=2,2-9=3</think><answer>3</answer><|eos|>", "7+5=2,2-9=3"),
    ("<think>7+5=2</think>2<|eos|>", "7+5=2"),  # sloppy: no answer tags
    ("<think>7+5=2,2-9<|eos|>", "7+5=2,2-9"),  # never closed
    ("<think>7+<answer>3</answer>", "7+"),
    ("3</answer>", ""),
])
def test_think_text(completion, think):
    assert think_text(completion) == think


def test_own_chain_is_scored_like_any_context(tiny_model, tok):
    """The own-chain NLL is answer_nll on the chains the model wrote (greedy, so repeatable)."""
    nll, chains = nll_given_own_chain(tiny_model, tok, PROBLEMS, max_new_tokens=12)
    assert len(nll) == len(chains) == len(PROBLEMS) and all(isinstance(c, str) for c in chains)
    assert nll == pytest.approx(answer_nll(tiny_model, tok, PROBLEMS, chains), abs=1e-5)
    assert nll_given_own_chain(tiny_model, tok, PROBLEMS, max_new_tokens=12)[1] == chains


# ----------------------------------------------------------------------------- along a document

def test_surprisal_and_entropy_along_a_document(tiny_model, tok):
    text = P3.prompt + P3.completion()
    n = len(tok.encode(text, allowed_special="all"))
    pieces, nats = surprisal(tiny_model, tok, text)
    pieces_h, entropy = entropy_along(tiny_model, tok, text)
    assert len(pieces) == len(nats) == len(entropy) == n and pieces_h == pieces
    assert "".join(pieces) == text
    assert math.isnan(nats[0]) and math.isnan(entropy[0])
    assert all(x >= 0 for x in nats[1:])
    assert all(0 <= h <= math.log(tiny_model.config.vocab_size) + 1e-5 for h in entropy[1:])
    # the answer digit's surprisal is the answer NLL given the gold chain
    answer_at = len(tok.encode(P3.prompt + P3.completion().split("</answer>")[0], allowed_special="all")) - 1
    assert pieces[answer_at] == "6"
    assert nats[answer_at] == pytest.approx(nll_given_gold_chain(tiny_model, tok, [P3])[0], abs=1e-4)


# ----------------------------------------------------------------------------- intervention and table

def test_empty_think_intervention_gives_two_digit_distributions(tiny_model, tok):
    out = empty_think_intervention(tiny_model, tok, P3)
    assert out["gold"] == 6
    for name in ("empty_think", "gold_chain"):
        assert len(out[name]) == 10 and sum(out[name]) == pytest.approx(1.0, abs=1e-5)
        assert all(x >= 0 for x in out[name])
        assert 0 < out["digit_mass"][name] <= 1
    # consistent with the NLLs: the gold digit's (unnormalised) probability is exp(-NLL)
    p_gold = out["gold_chain"][6] * out["digit_mass"]["gold_chain"]
    assert p_gold == pytest.approx(math.exp(-nll_given_gold_chain(tiny_model, tok, [P3])[0]), rel=1e-4)
    with pytest.raises(ValueError):
        empty_think_intervention(tiny_model, tok, BIG)


@pytest.fixture(scope="module")
def trained(tiny_config, tok):
    """The tiny model after a short pretraining run on 1-2 step problems (seed 0, ~4 s on one core).

    More complete working than the default mix, so copying the last result is
    learned within the budget. Measured gap (query minus gold chain, mean NLL):
    seed 0: 2.1 nats; seeds 1-4: 1.5 to 2.3; seed 5 learns late (0.5). Seed 0 it is.
    """
    task = TaskConfig(min_operands=2, max_operands=3, share_direct=0.2, share_partial=0.3, share_complete=0.5)
    torch.manual_seed(0)
    model = Transformer(tiny_config)
    pretrain(model, tok, task, TrainConfig(steps=250, batch_size=32, lr=1e-2, min_lr=1e-3, warmup_steps=10,
                                           eval_every=0, seed=0, device="cpu"), progress=False)
    return model, eval_problems(64, config=task)


def test_the_bridge_after_pretraining(trained, tok):
    """Given the query the answer stays near chance (ln 10); given the gold chain it is nearly certain."""
    model, problems = trained
    query = sum(nll_given_query(model, tok, problems)) / len(problems)
    gold = sum(nll_given_gold_chain(model, tok, problems)) / len(problems)
    assert abs(query - CHANCE_NLL) < 0.5
    assert gold < query - 1.0

    table = bridge_table(model, tok, problems, max_new_tokens=16)
    assert list(table) == [1, 2]  # 2-3 operands: 1-2 steps, sorted
    assert sum(row["count"] for row in table.values()) == len(problems)
    assert all(row["gold_chain"] < row["query"] for row in table.values())
    assert all(math.isfinite(row["own_chain"]) for row in table.values())

    two_step = next(p for p in problems if p.n_steps == 2)
    curve = nll_curve(model, tok, two_step)
    assert curve[-1] < curve[0]
    out = empty_think_intervention(model, tok, two_step)
    assert out["gold_chain"][out["gold"]] > out["empty_think"][out["gold"]]
