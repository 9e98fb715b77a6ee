"""The synthetic task and pretraining mix that let R1-Zero's curves appear at toy scale.

The task is a running sum modulo 10 over a few single digits:

    <|bos|>Q:7+5-9+3=?<think>7+5=2,2-9=3,3+3=6</think><answer>6</answer><|eos|>
    '------ prompt ----''--------------------- completion ----------------------'

Why this task. A 4-layer model cannot add several numbers in one forward
pass, so answering directly stays at chance (about 1 in 10). Each written step
("7+5=2") is a one-hop lookup it can learn, and because every hop is mod 10 a
partial chain leaves the answer at chance until the last step is written. So
accuracy is bought with chain-of-thought tokens: exactly the trade that makes
"think longer, score higher" visible.

The pretraining mix (shares of documents, `TaskConfig`):
    direct     `<think></think><answer>6</answer>`    the habit RL starts from
    partial    the first k steps of the working, then an answer
    complete   every step: the skill RL can amplify
    sloppy     the same content with the answer tags missing (so the format
               reward has something to teach)
Two variants are off by default:
    correction  in complete working, a step is sometimes written wrong and
                corrected in place ("7+5=3 wait 7+5=2"), to seed an "aha"
                analogue for RL to amplify (or not)
    filler      dots may pad the working ("7+5=2,..,2-9=3"), giving RL a way
                to grow length without growing reasoning: the setting where
                per-sequence GRPO normalisation shows a length bias.
    length extrapolation  `complete_max_operands=k`: complete working is shown
                only on problems of at most k operands (on longer ones a
                complete document becomes a partial one, except for a rare
                `share_complete_long`), so RL on all lengths asks for chains
                the base never saw complete.

A direct answer is *not* made correct here: the mix shows the right answer
after every kind of working, so the base model's direct answers are guesses
that happen to be right 1 time in 10.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import ClassVar

from .rewards import RewardConfig, total_reward
from .validation import integer, number, rule, text, validate


@dataclass(frozen=True)
class TaskConfig:
    min_operands: int = integer(3, ge=2, le=16)  # numbers per problem, at least
    max_operands: int = integer(8, ge=2, le=16)  # numbers per problem, at most (problems must fit the context)
    max_operand: int = integer(9, ge=1, le=99)  # operands are drawn from 0..max_operand
    modulus: int | None = integer(10, ge=2, le=100, optional=True)  # results are taken mod this; None for plain integers
    ops: str = text("+-", r"[+\-*]+", "a non-empty string of '+', '-', '*'")  # operators to draw from
    share_direct: float = number(0.5, ge=0, le=1)  # documents with an empty think block
    share_partial: float = number(0.3, ge=0, le=1)  # documents with the first k < n steps of the working
    share_complete: float = number(0.2, ge=0, le=1)  # documents with every step
    share_sloppy: float = number(0.1, ge=0, le=1)  # documents (of any kind) written without the answer tags
    share_correction: float = number(0.0, ge=0, le=1)  # complete working: chance per step of "wrong wait right"
    filler_max: int = integer(0, ge=0)  # working may carry up to this many filler dots between steps
    complete_max_operands: int | None = integer(None, ge=2, optional=True)  # complete working only on problems this long (None: all lengths)
    share_complete_long: float = number(0.0, ge=0, le=1)  # longer problems: chance a complete document keeps it (else partial)

    RULES: ClassVar[tuple] = (
        rule("min_operands", lambda c: c.min_operands <= c.max_operands,
             lambda c: f"at most max_operands ({c.max_operands})"),
        rule("share_complete", lambda c: abs(c.share_direct + c.share_partial + c.share_complete - 1) <= 1e-6,
             lambda c: f"such that share_direct + share_partial + share_complete is 1 (the three sum to "
                       f"{c.share_direct + c.share_partial + c.share_complete:g})"),
    )

    def __post_init__(self):
        validate(self)


def _apply(op: str, a: int, b: int, modulus: int | None) -> int:
    r = a + b if op == "+" else a - b if op == "-" else a * b
    return r % modulus if modulus else r


@dataclass(frozen=True)
class Problem:
    """One question: operands[0] ops[0] operands[1] ops[1] ... (evaluated left to right)."""

    operands: tuple[int, ...]
    ops: tuple[str, ...]
    modulus: int | None = 10

    @property
    def question(self) -> str:
        parts = [str(self.operands[0])]
        for op, x in zip(self.ops, self.operands[1:]):
            parts += [op, str(x)]
        return "".join(parts)

    @property
    def prompt(self) -> str:
        """What the model is given: '<|bos|>Q:7+5-9+3=?'."""
        return f"<|bos|>Q:{self.question}=?"

    @property
    def steps(self) -> list[str]:
        """The working, one hop per step: ['7+5=2', '2-9=3', '3+3=6']."""
        acc, out = self.operands[0], []
        for op, x in zip(self.ops, self.operands[1:]):
            nxt = _apply(op, acc, x, self.modulus)
            out.append(f"{acc}{op}{x}={nxt}")
            acc = nxt
        return out

    @property
    def answer(self) -> int:
        acc = self.operands[0]
        for op, x in zip(self.ops, self.operands[1:]):
            acc = _apply(op, acc, x, self.modulus)
        return acc

    @property
    def n_steps(self) -> int:
        return len(self.ops)

    def completion(self, k: int | None = None, *, tags: bool = True, eos: bool = True) -> str:
        """The completion with the first k steps of working (all if None)."""
        think = ",".join(self.steps[: self.n_steps if k is None else k])
        answer = f"<answer>{self.answer}</answer>" if tags else str(self.answer)
        return f"<think>{think}</think>{answer}" + ("<|eos|>" if eos else "")

    def reward(self, completion: str, config: RewardConfig = RewardConfig(), format_only: bool = False) -> float:
        return total_reward(completion, self.answer, config, format_only=format_only)


def sample_problem(rng: random.Random, config: TaskConfig = TaskConfig(), n_operands: int | None = None) -> Problem:
    n = n_operands or rng.randint(config.min_operands, config.max_operands)
    operands = tuple(rng.randint(0, config.max_operand) for _ in range(n))
    ops = tuple(rng.choice(config.ops) for _ in range(n - 1))
    return Problem(operands, ops, config.modulus)


def _corrupt(step: str, rng: random.Random, modulus: int | None) -> str:
    """'7+5=2' -> '7+5=3 wait 7+5=2': a wrong result, noticed and redone."""
    lhs, right = step.split("=")
    wrong = (int(right) + rng.randint(1, (modulus or 10) - 1)) % (modulus or 10) if modulus else int(right) + 1
    return f"{lhs}={wrong} wait {step}"


def render_working(problem: Problem, k: int, rng: random.Random, config: TaskConfig) -> str:
    """The first k steps, with the optional correction and filler variants applied."""
    steps = problem.steps[:k]
    if config.share_correction and k == problem.n_steps:
        steps = [_corrupt(s, rng, problem.modulus) if rng.random() < config.share_correction else s
                 for s in steps]
    sep = ","
    if config.filler_max:
        return "".join(s + (sep + "." * rng.randint(0, config.filler_max) if i < len(steps) - 1 else "")
                       for i, s in enumerate(steps))
    return sep.join(steps)


def parse_problem(text: str) -> Problem:
    """'7+5-9+3' (or 'Q:7+5-9+3=?', spaces allowed) -> its Problem; anything else -> a ValueError saying why.

    The task's questions are single digits joined by + or - (a running sum mod 10): 'hello world',
    an empty string or '12+30' are not questions the model was ever shown, so they get a message
    instead of a confident-looking answer.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("Type a question first, e.g. 7+5-9+3.")
    q = re.sub(r"\s+", "", text)
    q = q.removeprefix("Q:").removesuffix("=?").removesuffix("=")
    if not re.fullmatch(r"[0-9]([+-][0-9])+", q):
        raise ValueError(f"{text.strip()[:40]!r} is not a question this model knows: write single digits "
                         f"joined by + or -, e.g. 7+5-9+3.")
    return Problem(tuple(int(c) for c in q[0::2]), tuple(q[1::2]), 10)


def sample_document(rng: random.Random, config: TaskConfig = TaskConfig()) -> tuple[str, str]:
    """One pretraining document as (prompt, completion), drawn from the mix."""
    problem = sample_problem(rng, config)
    u = rng.random()
    if u < config.share_direct:
        k = 0
    elif u < config.share_direct + config.share_partial:
        k = rng.randint(1, problem.n_steps - 1) if problem.n_steps > 1 else 0
    else:
        k = problem.n_steps
        long = config.complete_max_operands is not None and len(problem.operands) > config.complete_max_operands
        if long and rng.random() >= config.share_complete_long:  # length extrapolation: never (or rarely) shown
            k = rng.randint(1, problem.n_steps - 1)
    think = render_working(problem, k, rng, config)
    answer = str(problem.answer)
    if rng.random() < config.share_sloppy:
        completion = f"<think>{think}</think>{answer}<|eos|>"
    else:
        completion = f"<think>{think}</think><answer>{answer}</answer><|eos|>"
    return problem.prompt, completion


def eval_problems(n: int, seed: int = 1234, config: TaskConfig = TaskConfig()) -> list[Problem]:
    """A fixed evaluation set (its own seed, so it never depends on the training stream)."""
    rng = random.Random(seed)
    return [sample_problem(rng, config) for _ in range(n)]
