"""
Rule-based rewards for R1-Zero-style reinforcement learning.

DeepSeek-R1 (arXiv 2501.12948) trains R1-Zero with no neural reward model at
all: a completion is scored by two plain rules. An *accuracy* rule checks the
final answer against the known result, and a *format* rule checks that the
model put its working inside <think>...</think> and its answer inside
<answer>...</answer>. Rules cannot be flattered the way a learned reward model
can, which is the point: the policy only gains by getting the sum right.

Our prompts look like `Q:7+5-9+3=?` and a well-formed completion is exactly

    <think>7+5=2,2-9=3,3+3=6</think><answer>6</answer>

optionally followed by a single <|eos|> and nothing else. The check is strict
(no stray whitespace, no text outside the tags, one of each tag) so that what
is rewarded is unambiguous and easy to show to a student.

Nothing is ever paid for length. If long working earned reward, any growth in
chain-of-thought during training would be something we bought, not something
that emerged because longer working helps get the answer right.
"""

import re
from dataclasses import dataclass
from numbers import Integral
from typing import Sequence

from .validation import number, validate

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)
SPECIALS = ("<|bos|>", "<|eos|>", "<|pad|>")  # must never appear inside the text
EOS = "<|eos|>"
MAX_DIGITS = 18  # every 18-digit integer fits in int64, so answers stay tensor-friendly

# One canonical spelling per integer: "6" but not "06", "+6", " 6", "6.0" or "-0".
# [0-9] rather than \d so that e.g. Arabic-Indic digits are not accepted.
_NUMBER = re.compile(r"-?[1-9][0-9]{0,%d}|0" % (MAX_DIGITS - 1))
_WAIT = re.compile(r"\bwait\b", re.IGNORECASE)
_COUNT_WORDS = {2: "two", 3: "three", 4: "four"}


@dataclass(frozen=True)
class Parsed:
    well_formed: bool  # the strict template holds
    think: str | None  # text inside <think>...</think> if well formed, else None
    answer: str | None  # text inside <answer>...</answer> if well formed, else None
    error: str | None  # short human-readable reason when not well formed


def _require_str(text, name="text"):
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, got {type(text).__name__}")


def _find_error(s: str) -> str | None:
    """The first thing wrong with `s` (trailing <|eos|> already removed), or None."""
    if not s:
        return "empty completion"
    for tag in TAGS:
        n = s.count(tag)
        if n == 0:
            return f"missing {tag}"
        if n > 1:
            return f"{_COUNT_WORDS.get(n, n)} {tag} tags"
    t_open, t_close = s.index(THINK_OPEN), s.index(THINK_CLOSE)
    a_open, a_close = s.index(ANSWER_OPEN), s.index(ANSWER_CLOSE)
    # These four checks together force t_open < t_close < a_open < a_close.
    if a_open < t_open:
        return "<answer> comes before <think>"
    if t_close < t_open:
        return "</think> comes before <think>"
    if a_close < a_open:
        return "</answer> comes before <answer>"
    if a_open < t_close:
        return "<answer> opens inside <think>"
    if t_open != 0:
        return "text before <think>"
    if a_open != t_close + len(THINK_CLOSE):
        return "text between </think> and <answer>"
    if a_close + len(ANSWER_CLOSE) != len(s):
        return "text after </answer>"
    think, answer = s[len(THINK_OPEN):t_close], s[a_open + len(ANSWER_OPEN):a_close]
    for part, tag in ((think, THINK_OPEN), (answer, ANSWER_OPEN)):
        for special in SPECIALS:
            if special in part:
                return f"special token {special} inside {tag}"
    return None


def parse_completion(text: str) -> Parsed:
    """
    Check a completion against the strict template and pull out its two parts.

    >>> parse_completion("<think>7+5=2,2-9=3,3+3=6</think><answer>6</answer><|eos|>")
    Parsed(well_formed=True, think='7+5=2,2-9=3,3+3=6', answer='6', error=None)
    >>> parse_completion("<think>1+1=2</think>2").error
    'missing <answer>'
    >>> parse_completion("<think></think><answer>2</answer> ").error
    'text after </answer>'
    """
    _require_str(text)
    s = text[: -len(EOS)] if text.endswith(EOS) else text  # one closing <|eos|> is fine
    error = _find_error(s)
    if error is not None:
        return Parsed(False, None, None, error)
    t_close, a_open = s.index(THINK_CLOSE), s.index(ANSWER_OPEN)
    return Parsed(True, s[len(THINK_OPEN):t_close], s[a_open + len(ANSWER_OPEN):-len(ANSWER_CLOSE)], None)


def parse_number(s: str | None) -> int | None:
    """
    Read a strictly written integer, or return None. Never raises on bad text.

    >>> parse_number("-42"), parse_number("0"), parse_number("06"), parse_number("6.0")
    (-42, 0, None, None)
    >>> parse_number("9" * 100) is None
    True
    """
    if s is None:
        return None
    _require_str(s, "s")
    return int(s) if _NUMBER.fullmatch(s) else None


def format_reward(text: str) -> float:
    """1.0 if the completion keeps the template, else 0.0.

    >>> format_reward("<think></think><answer>six</answer>"), format_reward("6")
    (1.0, 0.0)
    """
    return 1.0 if parse_completion(text).well_formed else 0.0


def _gold_int(gold) -> int:
    if isinstance(gold, Integral) and not isinstance(gold, bool):
        return int(gold)
    if isinstance(gold, str) and re.fullmatch(r"\s*-?[0-9]+\s*", gold):
        return int(gold)  # labels are trusted, so lenient; answers are not, so strict
    raise ValueError(f"gold must be an integer or an integer string, got {gold!r}")


def accuracy_reward(text: str, gold: int | str) -> float:
    """1.0 if the completion is well formed and its answer equals `gold`, else 0.0.

    A right number in a broken template earns nothing: the answer is only
    trusted where the template says it is.

    >>> accuracy_reward("<think>3+3=6</think><answer>6</answer>", "6")
    1.0
    >>> accuracy_reward("<think>3+3=6</think>6", 6)
    0.0
    """
    target = _gold_int(gold)
    p = parse_completion(text)
    return 1.0 if p.well_formed and parse_number(p.answer) == target else 0.0


@dataclass(frozen=True)
class RewardConfig:
    correct: float = number(1.0, ge=0)  # paid for a correct answer in a well-formed completion
    format: float = number(0.1, ge=0)  # paid for keeping the format (whether or not correct)

    def __post_init__(self):
        validate(self)  # finite and >= 0: a negative reward would push towards the behaviour it punishes


def total_reward(text: str, gold, config: RewardConfig = RewardConfig(), *, format_only: bool = False) -> float:
    """
    correct * accuracy + format * format_reward. With format_only=True only the
    format term is paid: a control run that rewards keeping the format, not
    getting the answer right.

    >>> total_reward("<think>3+3=6</think><answer>6</answer>", 6)
    1.1
    >>> total_reward("<think>3+3=6</think><answer>6</answer>", 6, format_only=True)
    0.1
    """
    fmt = format_reward(text)
    if format_only:
        return config.format * fmt
    return config.correct * accuracy_reward(text, gold) + config.format * fmt


def score_batch(texts: Sequence[str], golds: Sequence, config: RewardConfig = RewardConfig(), *,
                format_only: bool = False) -> dict[str, list[float]]:
    """Score many completions: {"reward": [...], "accuracy": [...], "format": [...]}.

    >>> score_batch(["<think></think><answer>2</answer>", "2"], [2, 2])
    {'reward': [1.1, 0.0], 'accuracy': [1.0, 0.0], 'format': [1.0, 0.0]}
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of str, not a single str")
    if len(texts) != len(golds):
        raise ValueError(f"texts and golds differ in length: {len(texts)} texts, {len(golds)} golds")
    return {
        "reward": [total_reward(t, g, config, format_only=format_only) for t, g in zip(texts, golds)],
        "accuracy": [accuracy_reward(t, g) for t, g in zip(texts, golds)],
        "format": [format_reward(t) for t in texts],
    }


def think_steps(think: str | None) -> list[str]:
    """Split working into its comma-separated steps (None or empty -> []).

    >>> think_steps("7+5=2,2-9=3,3+3=6")
    ['7+5=2', '2-9=3', '3+3=6']
    """
    return [step.strip() for step in (think or "").split(",") if step.strip()]


def count_self_corrections(think: str | None) -> int:
    """Count the word 'wait' in the working: the model taking a step back.

    >>> count_self_corrections("7+5=3 wait 7+5=2,2-9=3")
    1
    """
    return len(_WAIT.findall(think or ""))
