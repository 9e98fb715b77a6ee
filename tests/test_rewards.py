"""Tests for minids.rewards: the template, the number rule, and the rewards built on them."""

import doctest
import math

import pytest
from hypothesis import given, settings, strategies as st

import minids.rewards as rewards
from minids.rewards import (
    MAX_DIGITS, Parsed, RewardConfig, accuracy_reward, count_self_corrections, format_reward,
    parse_completion, parse_number, score_batch, think_steps, total_reward,
)

GOOD = "<think>7+5=2,2-9=3,3+3=6</think><answer>6</answer>"
CFG = RewardConfig()


def test_doctests():
    assert doctest.testmod(rewards).failed == 0


# --- the template -------------------------------------------------------------------

def test_well_formed():
    assert parse_completion(GOOD) == Parsed(True, "7+5=2,2-9=3,3+3=6", "6", None)
    assert parse_completion(GOOD + "<|eos|>") == Parsed(True, "7+5=2,2-9=3,3+3=6", "6", None)
    assert parse_completion("<think></think><answer>6</answer>") == Parsed(True, "", "6", None)
    assert parse_completion("<think>x</think><answer></answer>") == Parsed(True, "x", "", None)


@pytest.mark.parametrize("text, error", [
    ("", "empty completion"),
    ("<|eos|>", "empty completion"),
    ("<think>a</think><answer>6</answer><answer>6</answer>", "two <answer> tags"),
    ("<think><think>a</think></think><answer>6</answer>", "two <think> tags"),
    ("<think>a<answer>6</answer>", "missing </think>"),
    ("<think>a</think><answer>6", "missing </answer>"),
    ("<think>1+1=2</think>2", "missing <answer>"),
    ("6", "missing <think>"),
    ("so <think>a</think><answer>6</answer>", "text before <think>"),
    ("<|bos|><think>a</think><answer>6</answer>", "text before <think>"),
    ("<think>a</think><answer>6</answer>6", "text after </answer>"),
    ("<think>a</think><answer>6</answer> ", "text after </answer>"),
    ("<think>a</think><answer>6</answer>\n", "text after </answer>"),
    ("<think>a</think><answer>6</answer><|eos|><|eos|>", "text after </answer>"),
    ("<think>a</think> <answer>6</answer>", "text between </think> and <answer>"),
    ("<answer>6</answer><think>a</think>", "<answer> comes before <think>"),
    ("</think><think><answer>6</answer>", "</think> comes before <think>"),
    ("<think>a</think></answer>6<answer>", "</answer> comes before <answer>"),
    ("<think>a<answer>6</think></answer>", "<answer> opens inside <think>"),
    ("<think><|pad|></think><answer>6</answer>", "special token <|pad|> inside <think>"),
    ("<think>a</think><answer>6<|eos|></answer>", "special token <|eos|> inside <answer>"),
    ("<think>a<|bos|></think><answer>6</answer><|eos|>", "special token <|bos|> inside <think>"),
])
def test_malformed(text, error):
    p = parse_completion(text)
    assert p == Parsed(False, None, None, error)
    assert format_reward(text) == 0.0
    assert accuracy_reward(text, 6) == 0.0
    assert total_reward(text, 6) == 0.0


def test_type_errors():
    for bad in (None, b"<think></think>", 6):
        with pytest.raises(TypeError, match="must be a str"):
            parse_completion(bad)
        with pytest.raises(TypeError, match="must be a str"):
            total_reward(bad, 6)
    with pytest.raises(TypeError, match="must be a str"):
        parse_number(6)
    with pytest.raises(TypeError, match="single str"):
        score_batch(GOOD, "6")


# --- numbers -------------------------------------------------------------------------

@pytest.mark.parametrize("s, n", [
    ("6", 6), ("0", 0), ("-6", -6), ("120", 120), ("9" * MAX_DIGITS, int("9" * MAX_DIGITS)),
    ("-" + "9" * MAX_DIGITS, -int("9" * MAX_DIGITS)),
    (None, None), ("", None), ("-", None), ("six", None), ("6.0", None), (" 6", None),
    ("6 ", None), ("6\n", None), ("+6", None), ("06", None), ("00", None), ("-0", None),
    ("--6", None), ("6-", None), ("1_000", None), ("١٢", None), ("９", None),
    ("9" * (MAX_DIGITS + 1), None), ("9" * 100, None), ("1e3", None),
])
def test_parse_number(s, n):
    assert parse_number(s) == n


def test_accuracy():
    assert accuracy_reward(GOOD, 6) == accuracy_reward(GOOD, "6") == accuracy_reward(GOOD, " 6 ") == 1.0
    assert accuracy_reward(GOOD, 7) == 0.0
    for answer in ("six", "6.0", " 6", "+6", "06", "9" * 100):
        text = f"<think>3+3=6</think><answer>{answer}</answer>"
        assert format_reward(text) == 1.0  # the format holds, the number does not
        assert accuracy_reward(text, 6) == 0.0
        assert total_reward(text, 6) == pytest.approx(0.1)
    assert accuracy_reward("<think></think><answer>" + "9" * 100 + "</answer>", "9" * 100) == 0.0


@pytest.mark.parametrize("gold", ["six", "6.0", "", None, True, 6.0])
def test_bad_gold(gold):
    with pytest.raises(ValueError, match="gold"):
        accuracy_reward(GOOD, gold)


# --- config and totals ---------------------------------------------------------------

def test_config():
    assert RewardConfig(correct=2, format=0).correct == 2.0
    assert isinstance(RewardConfig(correct=2).correct, float)
    for field in ("correct", "format"):
        for bad in (math.nan, math.inf, -math.inf, "1", None, True):
            with pytest.raises(ValueError, match=field):
                RewardConfig(**{field: bad})


def test_total_reward():
    assert total_reward(GOOD, 6) == pytest.approx(1.1)
    assert total_reward(GOOD, 5) == pytest.approx(0.1)
    assert total_reward("6", 6) == 0.0
    cfg = RewardConfig(correct=2.0, format=0.5)
    assert total_reward(GOOD, 6, cfg) == 2.5
    assert total_reward(GOOD, 6, cfg, format_only=True) == 0.5
    assert total_reward(GOOD, 5, cfg, format_only=True) == 0.5


def test_no_length_reward():
    short = "<think></think><answer>6</answer>"
    long = "<think>" + "3+3=6," * 200 + "</think><answer>6</answer>"
    assert total_reward(short, 6) == total_reward(long, 6)


def test_score_batch():
    out = score_batch([GOOD, "6", GOOD.replace(">6<", ">5<")], [6, "6", 6])
    assert out == {"reward": [pytest.approx(1.1), 0.0, pytest.approx(0.1)],
                   "accuracy": [1.0, 0.0, 0.0], "format": [1.0, 0.0, 1.0]}
    ctrl = score_batch([GOOD], [6], format_only=True)
    assert ctrl["reward"] == [pytest.approx(0.1)] and ctrl["accuracy"] == [1.0]
    assert score_batch([], []) == {"reward": [], "accuracy": [], "format": []}
    with pytest.raises(ValueError, match="2 texts, 1 golds"):
        score_batch([GOOD, GOOD], [6])


# --- working ------------------------------------------------------------------------

def test_think_steps():
    assert think_steps("7+5=2,2-9=3,3+3=6") == ["7+5=2", "2-9=3", "3+3=6"]
    assert think_steps("") == [] and think_steps(None) == []
    assert think_steps("7+5=2") == ["7+5=2"]


def test_count_self_corrections():
    assert count_self_corrections("7+5=3 wait 7+5=2,2-9=3") == 1
    assert count_self_corrections("wait,Wait wait") == 3
    assert count_self_corrections("await waiting") == 0
    assert count_self_corrections("") == 0 and count_self_corrections(None) == 0


# --- fuzzing -------------------------------------------------------------------------

PIECES = st.sampled_from(
    list(rewards.TAGS) + list(rewards.SPECIALS)
    + ["6", "-", "0", "9" * 30, " ", "\n", "+", "x", "wait", ",", "<", ">", "/"]
)
ADVERSARIAL = st.lists(PIECES, max_size=12).map("".join)
SAFE_THINK = st.text(alphabet="0123456789+-=, abcdefghijklmnopqrstuvwxyz", max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=60), ADVERSARIAL), st.integers(-10**6, 10**6))
def test_fuzz_reward_is_defined(text, gold):
    cfg = RewardConfig(correct=1.0, format=0.1)
    r = total_reward(text, gold, cfg)
    assert isinstance(r, float) and math.isfinite(r)
    assert r in (0.0, cfg.format, cfg.correct + cfg.format)
    assert total_reward(text, gold, cfg, format_only=True) in (0.0, cfg.format)
    p = parse_completion(text)
    assert p.well_formed == (p.error is None) == (p.think is not None) == (p.answer is not None)


@settings(max_examples=200, deadline=None)
@given(SAFE_THINK, st.integers(-10**MAX_DIGITS + 1, 10**MAX_DIGITS - 1), st.integers(-50, 50), st.booleans())
def test_well_formed_round_trip(think, answer, gold, eos):
    text = f"<think>{think}</think><answer>{answer}</answer>" + ("<|eos|>" if eos else "")
    assert parse_completion(text) == Parsed(True, think, str(answer), None)
    assert parse_number(str(answer)) == answer
    assert accuracy_reward(text, gold) == float(answer == gold)
    assert accuracy_reward(text, answer) == accuracy_reward(text, str(answer)) == 1.0
    assert total_reward(text, answer) == pytest.approx(1.1)
