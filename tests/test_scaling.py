"""Test-time scaling: the vote and its tie rule, the curves on hand-made answers, budget forcing's caps."""

import pytest
import torch

from minids.scaling import (budget_curve, budget_forced_completions, extract_answer, force_think, majority_vote,
                            majority_vote_curve, pass_curve, sample_accuracy, sample_answers, vote_curve)
from minids.tasks import Problem, eval_problems

P = [Problem((7, 5, 9, 3), ("+", "-", "+")), Problem((4, 8), ("+",)), Problem((1, 2, 3), ("+", "+"))]


# ----------------------------------------------------------------------------- voting on hand-made answers

def test_majority_vote_and_tie_rule():
    assert majority_vote([3, 5, 5]) == 5
    assert majority_vote([3, 5, 5, 3]) == 3  # tie: the answer seen first wins
    assert majority_vote([5, 3, 3, 5]) == 5
    assert majority_vote([None, None, 7]) == 7  # malformed samples do not vote
    assert majority_vote([None, 2, None, 4, 4]) == 4
    assert majority_vote([None, None]) is None
    assert majority_vote([]) is None


def test_extract_answer_only_from_well_formed():
    assert extract_answer("<think>4+8=2</think><answer>2</answer><|eos|>") == 2
    assert extract_answer("<think>4+8=2</think>2<|eos|>") is None
    assert extract_answer("<think></think><answer>02</answer>") is None


def test_curves_on_hand_made_answers():
    golds = [1, 2, 3]
    answers = [[0, 1, 1, 0],  # N=1 wrong, N=2 tie -> 0 (first) wrong, N=3 right, N=4 tie -> 0 wrong
               [2, 9, 9, 9],  # right, right (tie, 2 first), wrong, wrong
               [None, 3, 4, 4]]  # wrong (no vote), right, right (tie 3 first), wrong
    assert vote_curve(answers, golds) == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3), 3: pytest.approx(2 / 3),
                                          4: 0.0}
    assert pass_curve(answers, golds) == {1: pytest.approx(1 / 3), 2: 1.0, 3: 1.0, 4: 1.0}
    assert sample_accuracy(answers, golds) == pytest.approx(4 / 12)
    # pass@N bounds the vote from above and never falls
    v, p = vote_curve(answers, golds), pass_curve(answers, golds)
    assert all(v[n] <= p[n] for n in v) and all(p[n] <= p[n + 1] for n in range(1, 4))
    with pytest.raises(ValueError):
        vote_curve(answers, golds[:2])


def test_sample_answers_shape_and_seed(tiny_model, tok):
    a = sample_answers(tiny_model, tok, P, 3, seed=1, max_new_tokens=12)
    assert len(a) == len(P) and all(len(x) == 3 for x in a)
    assert a == sample_answers(tiny_model, tok, P, 3, seed=1, max_new_tokens=12)
    curve = majority_vote_curve(tiny_model, tok, P, 3, seed=1, max_new_tokens=12)
    assert curve == vote_curve(a, [p.answer for p in P])
    with pytest.raises(ValueError):
        sample_answers(tiny_model, tok, P, 0)


# ----------------------------------------------------------------------------- budget forcing

def test_force_think_caps_and_extends(tiny_model, tok):
    prompts = [p.prompt for p in P]
    capped = force_think(tiny_model, tok, prompts, max_think=4, temperature=1.0, seed=0)
    assert all(len(t) <= 4 for t in capped)
    exact = force_think(tiny_model, tok, prompts, max_think=6, min_think=6, temperature=1.0, seed=0)
    assert [len(t) for t in exact] == [6, 6, 6]
    forbidden = {tok.encode(s, allowed_special="all")[0]
                 for s in ("</think>", "<answer>", "</answer>", "<think>", "<|eos|>", "<|bos|>", "<|pad|>")}
    assert not forbidden & {i for t in exact for i in t}
    assert force_think(tiny_model, tok, prompts, max_think=0) == [[], [], []]
    with pytest.raises(ValueError):
        force_think(tiny_model, tok, prompts, max_think=2, min_think=3)
    with pytest.raises(ValueError, match="max_seq_len"):
        force_think(tiny_model, tok, prompts, max_think=500)


def test_force_think_stops_where_the_model_closes(tiny_model, tok):
    """A model that always wants '</think>' writes nothing under a cap, and is held open by min_think."""
    close = tok.encode("</think>", allowed_special="all")[0]
    bias = torch.zeros(tok.vocab_size)  # makes the '</think>' logit dominate whatever the hidden state is
    bias[close] = 1e4
    tiny_model.head.register_forward_hook(lambda m, i, o: o + bias)
    assert force_think(tiny_model, tok, [P[0].prompt], max_think=8) == [[]]
    held = force_think(tiny_model, tok, [P[0].prompt], max_think=8, min_think=3)
    assert len(held[0]) == 3 and close not in held[0]


def test_budget_forced_completions_are_well_formed(tiny_model, tok):
    texts = budget_forced_completions(tiny_model, tok, P, max_think=5, min_think=5, temperature=1.0, seed=0)
    for t in texts:
        assert t.startswith("<think>") and t.count("</think><answer>") == 1
        body = t.split("</think>")[0].removeprefix("<think>")
        assert not any(tag in body for tag in ("<think>", "<answer>", "</answer>", "<|eos|>"))


def test_budget_curve_cap_limits_think_length(tiny_model, tok):
    problems = eval_problems(4, seed=3)
    curve = budget_curve(tiny_model, tok, problems, [0, 3, 6], temperature=1.0)
    assert list(curve) == [0, 3, 6]
    assert curve[0]["think_length"] == 0 and curve[0]["cut"] == 1.0
    assert curve[3]["think_length"] <= 3 and curve[6]["think_length"] <= 6
    ext = budget_curve(tiny_model, tok, problems, [5], extend=True, limit=8, temperature=1.0)
    assert 5 <= ext[5]["think_length"] <= 8
    for row in list(curve.values()) + list(ext.values()):
        assert 0 <= row["accuracy"] <= 1
