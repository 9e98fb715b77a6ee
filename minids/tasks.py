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
from dataclasses import dataclass

from .rewards import RewardConfig, total_reward


@dataclass(frozen=True)
class TaskConfig:
    min_operands: int = 3  # numbers per problem, at least
    max_operands: int = 8  # numbers per problem, at most
    max_operand: int = 9  # operands are drawn from 0..max_operand
    modulus: int | None = 10  # results are taken mod this; None for plain integer arithmetic
    ops: str = "+-"  # operators to draw from
    share_direct: float = 0.5  # documents with an empty think block
    share_partial: float = 0.3  # documents with the first k < n steps of the working
    share_complete: float = 0.2  # documents with every step
    share_sloppy: float = 0.1  # documents (of any kind) written without the answer tags
    share_correction: float = 0.0  # complete working: chance per step of "wrong wait right"
    filler_max: int = 0  # working may carry up to this many filler dots between steps
    complete_max_operands: int | None = None  # complete working only on problems this long (None: all lengths)
    share_complete_long: float = 0.0  # longer problems: chance a complete document keeps it (else partial)

    def __post_init__(self):
        for name in ("min_operands", "max_operands", "max_operand"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < (2 if name != "max_operand" else 1):
                raise ValueError(f"TaskConfig.{name} must be an integer >= {2 if name != 'max_operand' else 1}, "
                                 f"got {v!r}")
        if self.min_operands > self.max_operands:
            raise ValueError(f"TaskConfig.min_operands ({self.min_operands}) exceeds max_operands "
                             f"({self.max_operands})")
        if self.modulus is not None and (not isinstance(self.modulus, int) or self.modulus < 2):
            raise ValueError(f"TaskConfig.modulus must be an integer >= 2 or None, got {self.modulus!r}")
        if not self.ops or set(self.ops) - set("+-*"):
            raise ValueError(f"TaskConfig.ops must be a non-empty string of '+', '-', '*', got {self.ops!r}")
        for name in ("share_direct", "share_partial", "share_complete", "share_sloppy", "share_correction"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"TaskConfig.{name} must lie in [0, 1], got {v!r}")
        total = self.share_direct + self.share_partial + self.share_complete
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"TaskConfig.share_direct + share_partial + share_complete must be 1, got {total:g}")
        if self.modulus is not None and self.modulus > 100:
            raise ValueError(f"TaskConfig.modulus must be at most 100 (results stay short), got {self.modulus!r}")
        if self.max_operands > 16 or self.max_operand > 99:
            raise ValueError(f"TaskConfig.max_operands must be <= 16 and max_operand <= 99 (problems must fit the "
                             f"context), got {self.max_operands} and {self.max_operand}")
        if self.complete_max_operands is not None and (not isinstance(self.complete_max_operands, int)
                                                       or self.complete_max_operands < 2):
            raise ValueError(f"TaskConfig.complete_max_operands must be an integer >= 2 or None, "
                             f"got {self.complete_max_operands!r}")
        if not 0.0 <= self.share_complete_long <= 1.0:
            raise ValueError(f"TaskConfig.share_complete_long must lie in [0, 1], got {self.share_complete_long!r}")
        if not isinstance(self.filler_max, int) or self.filler_max < 0:
            raise ValueError(f"TaskConfig.filler_max must be a non-negative integer, got {self.filler_max!r}")


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
