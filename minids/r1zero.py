"""R1-Zero on a laptop: pretrain a base, check it has the skill, then GRPO with rule rewards.

The pipeline that `python -m minids r1zero` runs, end to end:

  1. pretrain a tiny MoE model on the task mix (`minids.tasks`), mostly
     direct answers and partial working, some complete working;
  2. the gate: can the base write a complete, correct chain when led through
     it (`working_accuracy` >= 0.8)? If not, RL has nothing to amplify, and
     the run stops unless forced;
  3. GRPO from the base with rewards for a correct answer and a kept format,
     nothing for length;
  4. write the per-step history (JSON lines), a summary, both checkpoints and
     an offline HTML report of the curves.

What to expect: sampled accuracy climbs from about the base's 0.2-0.3 to
0.8-0.97 and the think block grows from about 8 to about 24 tokens, because
only complete chains are reliably right. RL does not invent the step skill;
it selects the behaviour (writing every step) that pretraining seeded.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from .device import resolve_device
from .evaluate import rollout_stats, working_accuracy
from .grpo import GRPOConfig, check_lengths, grpo_train
from .model import ModelConfig, Transformer
from .tasks import TaskConfig, eval_problems
from .tokenizer import default_tokenizer
from .train import TrainConfig, pretrain
from .paths import ensure_writable_folder
from .validation import device as device_field, flag, integer, nested, validate

GATE = 0.8  # working accuracy the base needs before RL


class GateError(RuntimeError):
    """The base model cannot yet write a correct chain; RL would have nothing to amplify."""


@dataclass
class R1ZeroSettings:
    seed: int = integer(0, ge=0, lt=2**32)
    device: str = device_field("auto")
    model: ModelConfig | None = nested(ModelConfig, optional=True)  # None: the default config with the default tokenizer's vocab
    task: TaskConfig = nested(TaskConfig)
    pretrain: TrainConfig = nested(TrainConfig)
    grpo: GRPOConfig = nested(GRPOConfig)
    eval_size: int = integer(128, ge=1)  # problems for the before/after evaluation
    eval_samples: int = integer(2, ge=1)  # samples per problem for sampled accuracy
    force: bool = flag(False)  # start RL even if the gate fails (a labelled control)

    def __post_init__(self):
        validate(self)


def with_seed(settings: R1ZeroSettings) -> R1ZeroSettings:
    """Propagate the run's seed and device into every stage."""
    return replace(settings,
                   pretrain=replace(settings.pretrain, seed=settings.seed, device=settings.device),
                   grpo=replace(settings.grpo, seed=settings.seed, device=settings.device))


def evaluate_model(model, tok, settings: R1ZeroSettings) -> dict:
    problems = eval_problems(settings.eval_size, seed=99, config=settings.task)
    sampled = rollout_stats(model, tok, problems, temperature=1.0, samples=settings.eval_samples,
                            max_new_tokens=settings.grpo.max_completion_length, seed=settings.seed)
    greedy = rollout_stats(model, tok, problems, temperature=0,
                           max_new_tokens=settings.grpo.max_completion_length)
    return {"sampled_accuracy": sampled["accuracy"], "greedy_accuracy": greedy["accuracy"],
            "format": sampled["format"], "think_length": sampled["think_length"],
            "working_accuracy": working_accuracy(model, tok, problems),
            "examples": sampled["texts"][:6]}


def run_r1zero(out: str | Path, settings: R1ZeroSettings = R1ZeroSettings(), *, progress: bool = True,
               log=print, restart: bool = False) -> dict:
    """Pretrain (or resume), gate, GRPO (or resume), evaluate; returns the summary dict.

    Everything that can be checked is checked before the first step: the
    settings, the device, the output folder, and that every prompt plus
    max_completion_length fits the context. restart=True ignores (and
    overwrites) the checkpoints of an earlier run in `out`.
    """
    if not isinstance(settings, R1ZeroSettings):
        raise ValueError(f"settings must be an R1ZeroSettings, got {type(settings).__name__}")
    settings = with_seed(settings)
    out = Path(out)
    tok = default_tokenizer()
    config = settings.model or ModelConfig(vocab_size=tok.vocab_size)
    device = resolve_device(settings.device)
    extra = eval_problems(settings.eval_size, seed=99, config=settings.task)
    check_lengths(tok, settings.task, settings.grpo, config.max_seq_len, extra)
    ensure_writable_folder(out)
    timings = {}

    torch.manual_seed(settings.seed)
    model = Transformer(config).to(device)
    t0 = time.perf_counter()
    pre = pretrain(model, tok, settings.task, settings.pretrain, checkpoint=out / "base.pt", progress=progress,
                   resume=not restart)
    timings["pretrain_s"] = time.perf_counter() - t0
    if pre.interrupted:
        return {"interrupted": "pretrain"}
    before = evaluate_model(model, tok, settings)
    log(f"base: working accuracy {before['working_accuracy']:.2f}, sampled accuracy "
        f"{before['sampled_accuracy']:.2f}, think {before['think_length']:.1f} tokens")
    if before["working_accuracy"] < GATE and not settings.force:
        raise GateError(
            f"the base writes a complete correct chain for only {before['working_accuracy']:.0%} of problems "
            f"(the gate is {GATE:.0%}): RL would have no skill to amplify. Pretrain longer "
            f"(--pretrain-steps), or pass --force to run RL anyway as a control.")

    t0 = time.perf_counter()
    rl = grpo_train(model, tok, settings.task, settings.grpo, checkpoint=out / "rl.pt", progress=progress,
                    resume=not restart)
    timings["grpo_s"] = time.perf_counter() - t0
    timings["rollout_s"] = sum(r["time/rollout"] for r in rl.history)
    with open(out / "history.jsonl", "w") as f:
        for record in rl.history:
            f.write(json.dumps(record) + "\n")
    if rl.interrupted:
        return {"interrupted": "grpo"}
    after = evaluate_model(model, tok, settings)
    summary = {
        "seed": settings.seed, "device": str(device), "before": before, "after": after,
        "accuracy_gain": after["sampled_accuracy"] - before["sampled_accuracy"],
        "think_growth": after["think_length"] / max(before["think_length"], 1e-9),
        "timings": timings,
        "settings": {"task": asdict(settings.task), "pretrain": asdict(settings.pretrain),
                     "grpo": asdict(settings.grpo), "model": config.to_dict(), "force": settings.force},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    write_report(out / "report.html", rl.history, summary)
    return summary


def summary_table(summary: dict) -> str:
    b, a = summary["before"], summary["after"]
    rows = [("sampled accuracy", b["sampled_accuracy"], a["sampled_accuracy"]),
            ("greedy accuracy", b["greedy_accuracy"], a["greedy_accuracy"]),
            ("format kept", b["format"], a["format"]),
            ("mean think tokens", b["think_length"], a["think_length"]),
            ("working accuracy (gate)", b["working_accuracy"], a["working_accuracy"])]
    lines = [f"{'':26s}{'base':>10s}{'after RL':>10s}"]
    lines += [f"{name:26s}{x:10.2f}{y:10.2f}" for name, x, y in rows]
    t = summary["timings"]
    lines.append(f"time: pretraining {t['pretrain_s']:.0f} s, GRPO {t['grpo_s']:.0f} s "
                 f"(rollouts {t['rollout_s']:.0f} s)")
    return "\n".join(lines)


def history_figure(history: list[dict], title: str = "R1-Zero on a laptop"):
    """Accuracy, reward and think length per RL step, as one plotly figure."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    steps = [r["step"] for r in history]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("accuracy and reward", "mean think length (tokens)"))
    fig.add_trace(go.Scatter(x=steps, y=[r["accuracy"] for r in history], name="sampled accuracy"), 1, 1)
    fig.add_trace(go.Scatter(x=steps, y=[r["format"] for r in history], name="format kept"), 1, 1)
    greedy = [(r["step"], r["eval/greedy_accuracy"]) for r in history if "eval/greedy_accuracy" in r]
    if greedy:
        fig.add_trace(go.Scatter(x=[s for s, _ in greedy], y=[g for _, g in greedy], name="greedy accuracy",
                                 mode="lines+markers"), 1, 1)
    fig.add_trace(go.Scatter(x=steps, y=[r["think_length"] for r in history], name="think length"), 1, 2)
    fig.update_xaxes(title_text="RL step")
    fig.update_layout(title=title, height=420)
    return fig


def write_report(path: Path, history: list[dict], summary: dict) -> None:
    """A self-contained HTML page (plotly's JavaScript inlined, so it opens offline)."""
    fig = history_figure(history)
    table = summary_table(summary).replace("&", "&amp;").replace("<", "&lt;")
    examples = "\n".join(e.replace("&", "&amp;").replace("<", "&lt;") for e in summary["after"]["examples"])
    html = fig.to_html(include_plotlyjs=True, full_html=False)
    Path(path).write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>minids r1zero report</title></head><body>"
        f"<h1>R1-Zero on a laptop (seed {summary['seed']}, {summary['device']})</h1><pre>{table}</pre>{html}"
        f"<h2>Completions after RL</h2><pre>{examples}</pre></body></html>")


def read_history(path: str | Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


RUNS_DIR = Path(__file__).parent / "data" / "runs"  # histories shipped with the package


def shipped_runs() -> list[str]:
    """Names of the recorded runs (default seeds, controls, variants) that ship with the package.

    They were made with `bash bench/r1zero_controls.sh cuda runs/gpu` (one GPU, every run in
    parallel) and copied here; each folder holds the per-step history and the summary.
    """
    return sorted(p.name for p in RUNS_DIR.iterdir() if (p / "history.jsonl").exists())


def shipped_run(name: str) -> tuple[list[dict], dict]:
    """(history, summary) of a shipped run, e.g. "seed0", "format_only", "filler_grpo"."""
    folder = RUNS_DIR / name
    if not (folder / "history.jsonl").exists():
        raise ValueError(f"no shipped run {name!r}; choose one of {shipped_runs()}")
    return read_history(folder / "history.jsonl"), json.loads((folder / "summary.json").read_text())
