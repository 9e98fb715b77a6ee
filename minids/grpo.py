"""GRPO: Group Relative Policy Optimization, the RL algorithm behind DeepSeek-R1-Zero.

For each prompt, sample a group of G completions, score each with the rule
rewards, and push up the log-probability of the completions that beat their
group's average, push down the rest (DeepSeekMath, arXiv 2402.03300; R1,
arXiv 2501.12948). There is no critic: the group mean is the baseline.

    advantage   A_i = r_i - mean(r)                  (scale_rewards="none")
                A_i = (r_i - mean(r)) / (std(r) + eps)  (scale_rewards="group", the original)
    ratio       rho_t = pi(o_t | ...) / pi_old(o_t | ...)
    surrogate   min(rho_t * A_i, clip(rho_t, 1-epsilon, 1+epsilon_high) * A_i)
    KL          k3 = exp(ref - logp) - (ref - logp) - 1 (per token, beta > 0 only)
    loss        -(surrogate - beta * KL), averaged as loss_type says:
      "grpo"     mean over each sequence's tokens, then over sequences (the
                 original). A long wrong answer spreads its penalty over more
                 tokens, so each token is punished less: a bias towards long
                 wrong answers (Dr. GRPO, arXiv 2503.20783).
      "dr_grpo"  sum over all tokens / (sequences * max_completion_length): a
                 constant normaliser, no length bias.

Knob and metric names follow TRL's GRPOTrainer where the idea is the same, so
what a student learns here carries over.
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

import torch
from einops import rearrange

from .checkpoint import save_checkpoint
from .device import autocast, resolve_device
from .generate import MIN_TEMPERATURE, generate
from .model import Transformer
from .rewards import RewardConfig, count_self_corrections, parse_completion, score_batch
from .tasks import TaskConfig, eval_problems, sample_problem
from .tokenizer import Tokenizer
from .validation import choice, device as device_field, flag, integer, nested, number, rule, validate
from .loop import defer_interrupt, resume_from, run_loop
from .train import make_optimizer

LOSS_TYPES = ("grpo", "dr_grpo")
SCALE_REWARDS = ("group", "none")


@dataclass
class GRPOConfig:
    steps: int = integer(100, ge=1)  # RL steps: one batch of rollouts each
    prompts_per_step: int = integer(8, ge=1)  # distinct prompts per step
    num_generations: int = integer(8, ge=2)  # G, completions sampled per prompt (advantages compare >= 2)
    learning_rate: float = number(1e-4, gt=0, lt=1)  # AdamW learning rate, constant (3e-4 oscillated or collapsed on some seeds)
    beta: float = number(0.0, ge=0)  # KL coefficient towards the frozen starting model (0: no reference kept)
    epsilon: float = number(0.2, gt=0, lt=1)  # lower clipping range: ratio >= 1 - epsilon
    epsilon_high: float | None = number(None, gt=0, optional=True)  # upper clipping range (None: same as epsilon)
    num_iterations: int = integer(1, ge=1)  # mu, policy updates per batch of rollouts (>1 reuses old log-probs)
    loss_type: str = choice("dr_grpo", LOSS_TYPES)  # "grpo" (per-sequence mean) | "dr_grpo" (constant normaliser)
    scale_rewards: str = choice("none", SCALE_REWARDS)  # "group": divide advantages by the group std | "none"
    max_completion_length: int = integer(64, ge=1)  # hard cap on generated tokens
    mask_truncated_completions: bool = flag(False)  # drop completions that hit the cap from the loss
    temperature: float = number(1.0, ge=MIN_TEMPERATURE)  # sampling temperature for rollouts (log-probs divide by it)
    max_grad_norm: float = number(1.0, gt=0)  # gradient clipping
    format_only: bool = flag(False)  # control: reward the format alone, not correctness
    reward: RewardConfig = nested(RewardConfig)
    eval_every: int = integer(10, ge=0)  # steps between greedy evaluations on a fixed set (0: never)
    eval_size: int = integer(64, ge=0)  # problems in that set
    log_completions: int = integer(3, ge=0)  # sample completions kept in each step's record
    checkpoint_every: int = integer(20, ge=0)  # steps between checkpoints when a path is given (0: only at the end)
    seed: int = integer(0, ge=0, lt=2**32)  # rollout sampling and prompt stream
    device: str = device_field("auto")
    bf16: bool = flag(True)  # bf16 autocast on CUDA (ignored on CPU)

    RULES: ClassVar[tuple] = (
        rule("eval_size", lambda c: c.eval_size >= 1 or not c.eval_every, "at least 1 when eval_every > 0"),
    )

    def __post_init__(self):
        validate(self)


# ----------------------------------------------------------------------------- the math, one function each

def group_advantages(rewards: torch.Tensor, num_generations: int, scale_rewards: str = "none",
                     eps: float = 1e-4) -> torch.Tensor:
    """(P*G,) rewards, grouped consecutively by prompt -> (P*G,) advantages.

    Worked example, one group with rewards 90, 80, 70, 60: mean 75, so the
    unscaled advantages are 15, 5, -5, -15; the (sample) std is 12.91, so the
    scaled ones are 1.16, 0.39, -0.39, -1.16. Equal rewards give zero
    advantage: a group where every sample is right (or wrong) teaches nothing.
    """
    if isinstance(num_generations, bool) or not isinstance(num_generations, int) or num_generations < 1 \
            or rewards.numel() % num_generations:
        raise ValueError(f"num_generations must be a positive integer dividing the {rewards.numel()} rewards, "
                         f"got {num_generations!r}")
    if scale_rewards not in SCALE_REWARDS:
        raise ValueError(f"scale_rewards must be one of {SCALE_REWARDS}, got {scale_rewards!r}")
    bad = (~torch.isfinite(rewards)).nonzero().flatten().tolist()
    if bad:
        raise ValueError(f"rewards must be finite numbers; reward {rewards[bad[0]].item()} at position {bad[0]} "
                         f"(of {len(bad)} non-finite) would make its whole group NaN")
    r = rearrange(rewards.float(), "(p g) -> p g", g=num_generations)  # (P, G)
    adv = r - r.mean(dim=1, keepdim=True)
    if scale_rewards == "group":  # one sample alone has std 0 here (not NaN), so advantage 0
        adv = adv / (r.std(dim=1, keepdim=True, correction=int(num_generations > 1)) + eps)
    return adv.flatten()  # (P*G,)


def token_logprobs(model: Transformer, prompt_ids, prompt_mask, ids, temperature: float = 1.0):
    """Log-probabilities (and entropies) the model gives each completion token.

    prompt_ids/prompt_mask (B, P) left-padded; ids (B, L) -> logp (B, L), entropy (B, L).
    """
    seq = torch.cat([prompt_ids, ids], dim=1)  # (B, P+L)
    key_mask = torch.cat([prompt_mask, torch.ones_like(ids, dtype=torch.bool)], dim=1)
    P = prompt_ids.shape[1]
    logits = model(seq[:, :-1], key_mask=key_mask[:, :-1]).logits[:, P - 1:]  # (B, L, V): predicts ids
    logp_all = (logits.float() / temperature).log_softmax(-1)
    logp = logp_all.gather(-1, ids[..., None]).squeeze(-1)  # (B, L)
    entropy = -(logp_all.exp() * logp_all).sum(-1)  # (B, L)
    return logp, entropy


def grpo_loss(logp, old_logp, adv, mask, *, epsilon=0.2, epsilon_high=None, beta=0.0, ref_logp=None,
              loss_type="dr_grpo", max_completion_length=None):
    """Clipped surrogate (+ k3 KL) -> (loss, stats). logp/old_logp/ref_logp/mask (B, L); adv (B,)."""
    mask = mask.float()
    ratio = torch.exp(logp - old_logp)  # (B, L): 1 on the first pass over fresh rollouts
    hi = 1 + (epsilon if epsilon_high is None else epsilon_high)
    clipped = torch.clamp(ratio, 1 - epsilon, hi)
    a = adv[:, None]  # (B, 1)
    per_token = -torch.min(ratio * a, clipped * a)  # (B, L)
    kl = None
    if beta > 0:
        if ref_logp is None:
            raise ValueError("beta > 0 needs ref_logp from the reference model")
        d = ref_logp - logp
        kl = torch.exp(d) - d - 1  # k3: unbiased, always >= 0
        per_token = per_token + beta * kl
    if loss_type == "grpo":
        loss = ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()
    elif loss_type == "dr_grpo":
        L = max_completion_length or mask.shape[1]
        loss = (per_token * mask).sum() / (mask.shape[0] * L)
    else:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    n = mask.sum().clamp(min=1)
    is_clipped = ((ratio < 1 - epsilon) & (a < 0)) | ((ratio > hi) & (a > 0))
    stats = {"clip_ratio": float((is_clipped.float() * mask).sum() / n),
             "kl": float((kl.detach() * mask).sum() / n) if kl is not None else 0.0}
    return loss, stats


# ----------------------------------------------------------------------------- the trainer

@dataclass
class GRPOResult:
    model: Transformer
    history: list[dict] = field(default_factory=list)
    interrupted: bool = False


def _think_tokens(tokenizer: Tokenizer, text: str) -> int:
    from .evaluate import think_length
    return think_length(tokenizer, text)


def step_problems(task: TaskConfig, config: GRPOConfig, step: int):
    """The prompts of RL step `step` (0-based): they depend on (seed, step) alone, so a resumed run sees the same."""
    rng = random.Random(config.seed * 1_000_003 + step)
    return [sample_problem(rng, task) for _ in range(config.prompts_per_step)]


def check_lengths(tokenizer: Tokenizer, task: TaskConfig, config: GRPOConfig, max_seq_len: int,
                  extra_problems=()) -> None:
    """Before any work: every prompt the run will see (each step's, the evaluation set's, `extra_problems`)
    plus max_completion_length must fit the model's context; ValueError saying the largest length that fits."""
    problems = [p for step in range(config.steps) for p in step_problems(task, config, step)]
    if config.eval_every:
        problems += eval_problems(config.eval_size, seed=4321, config=task)
    longest = max(len(tokenizer.encode(p.prompt, allowed_special="all")) for p in [*problems, *extra_problems])
    if longest + config.max_completion_length > max_seq_len:
        raise ValueError(f"GRPOConfig.max_completion_length={config.max_completion_length} plus the longest "
                         f"prompt ({longest} tokens) exceeds the model's context (max_seq_len={max_seq_len}); "
                         f"at most {max_seq_len - longest} fits")


def grpo_train(model: Transformer, tokenizer: Tokenizer, task: TaskConfig = TaskConfig(),
               config: GRPOConfig = GRPOConfig(), *, checkpoint: str | Path | None = None,
               resume: bool = True, callback: Callable[[dict], None] | None = None,
               progress: bool = True) -> GRPOResult:
    """Run GRPO on `model` in place; returns it with one history record per step.

    checkpoint / resume / callback as in `train.pretrain` (the same loop, `minids.loop`).
    """
    from .evaluate import rollout_stats

    device = resolve_device(config.device)
    check_lengths(tokenizer, task, config, model.config.max_seq_len)
    model.to(device).train()
    opt = make_optimizer(model, config.learning_rate, weight_decay=0.0)
    ref = None
    if config.beta > 0:
        ref = copy.deepcopy(model).eval().requires_grad_(False)
    meta = {"task": asdict(task), "grpo": asdict(config)}
    history: list[dict] = []
    start = 0
    state = resume_from(checkpoint, model, tokenizer, meta, device, resume,
                        needs=("step", "history", "optimizer") + (("reference",) if ref is not None else ()))
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        if ref is not None:
            ref.load_state_dict(state["reference"])
        history, start = list(state["history"]), state["step"]

    def save(step):
        if checkpoint is not None:
            extra = {"reference": ref.state_dict()} if ref is not None else {}
            save_checkpoint(checkpoint, model, tokenizer, {**meta, "step": step, "history": history,
                                                            "optimizer": opt.state_dict(), **extra})

    eval_set = eval_problems(config.eval_size, seed=4321, config=task) if config.eval_every else []
    G = config.num_generations

    def evaluate(step, record):
        if config.eval_every and (step % config.eval_every == 0 or step + 1 == config.steps):
            greedy = rollout_stats(model, tokenizer, eval_set, temperature=0,
                                   max_new_tokens=config.max_completion_length)
            record["eval/greedy_accuracy"] = greedy["accuracy"]
            record["eval/greedy_think_length"] = greedy["think_length"]
            model.train()

    interrupted = run_loop(lambda step: grpo_step(model, tokenizer, task, config, opt, ref, step, G),
                           start=start, steps=config.steps, history=history, save=save,
                           checkpoint_every=config.checkpoint_every, after=evaluate, callback=callback,
                           postfix=lambda r: {"acc": f"{r['accuracy']:.2f}", "think": f"{r['think_length']:.1f}"},
                           desc="grpo", progress=progress, checkpoint=checkpoint)
    model.eval()
    return GRPOResult(model=model, history=history, interrupted=interrupted)


def grpo_step(model, tokenizer, task, config: GRPOConfig, opt, ref, step: int, G: int) -> dict:
    """One GRPO step: rollouts, rewards, advantages, then num_iterations policy updates."""
    device = model.device
    t0 = time.perf_counter()
    problems = step_problems(task, config, step)
    rows = [p for p in problems for _ in range(G)]  # (P*G): each prompt G times, consecutively
    out = generate(model, tokenizer, [p.prompt for p in rows], config.max_completion_length,
                   temperature=config.temperature, seed=config.seed * 1_000_003 + step)
    t_rollout = time.perf_counter() - t0
    scores = score_batch(out.texts, [p.answer for p in rows], config.reward, format_only=config.format_only)
    for i, r in enumerate(scores["reward"]):
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r):
            raise ValueError(f"step {step + 1}: the reward of completion {out.texts[i]!r} (prompt {rows[i].prompt!r}) "
                             f"is {r!r}; rewards must be finite numbers")
    rewards = torch.tensor(scores["reward"], device=device)
    adv = group_advantages(rewards, G, config.scale_rewards)  # (P*G,)
    mask = out.mask.clone()
    if config.mask_truncated_completions:
        mask &= ~out.truncated[:, None]

    model.train()
    with torch.no_grad(), autocast(device, config.bf16):
        old_logp = (token_logprobs(model, out.prompt_ids, out.prompt_mask, out.ids, config.temperature)[0]
                    if config.num_iterations > 1 else None)
        ref_logp = (token_logprobs(ref, out.prompt_ids, out.prompt_mask, out.ids, config.temperature)[0]
                    if ref is not None else None)
    for _ in range(config.num_iterations):
        with autocast(device, config.bf16):
            logp, entropy = token_logprobs(model, out.prompt_ids, out.prompt_mask, out.ids, config.temperature)
            loss, stats = grpo_loss(logp, logp.detach() if old_logp is None else old_logp, adv, mask,
                                    epsilon=config.epsilon, epsilon_high=config.epsilon_high,
                                    beta=config.beta, ref_logp=ref_logp, loss_type=config.loss_type,
                                    max_completion_length=config.max_completion_length)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        with defer_interrupt():
            opt.step()
            model.update_balance_bias()

    r = rearrange(rewards, "(p g) -> p g", g=G)
    lengths = out.mask.sum(1).float()
    parsed = [parse_completion(t) for t in out.texts]
    think = [_think_tokens(tokenizer, t) for t in out.texts]
    n_corr = [count_self_corrections(p.think) for p in parsed]
    m = out.mask.float()
    return {
        "step": step + 1,
        "reward": float(rewards.mean()),
        "reward_std": float(r.std(dim=1).mean()),
        "accuracy": sum(scores["accuracy"]) / len(rows),
        "format": sum(scores["format"]) / len(rows),
        "completions/mean_length": float(lengths.mean()),
        "completions/clipped_ratio": float(out.truncated.float().mean()),
        "think_length": sum(think) / len(think),
        "think_length_correct": _mean([t for t, a in zip(think, scores["accuracy"]) if a]),
        "think_length_wrong": _mean([t for t, a in zip(think, scores["accuracy"]) if not a]),
        "self_corrections": sum(n_corr) / len(n_corr),
        "frac_reward_zero_std": float((r.std(dim=1) == 0).float().mean()),
        "entropy": float((entropy.detach() * m).sum() / m.sum().clamp(min=1)),
        "loss": loss.item(),
        "grad_norm": float(grad_norm),
        **stats,
        "time/rollout": t_rollout,
        "time/step": time.perf_counter() - t0,
        "samples": [{"prompt": rows[i].prompt, "completion": out.texts[i], "reward": scores["reward"][i]}
                    for i in range(0, len(rows), max(1, len(rows) // max(1, config.log_completions)))
                    ][: config.log_completions],
    }


def _mean(xs):
    return sum(xs) / len(xs) if xs else None
