"""R1-Zero on a laptop: pretrain a base, check it has the skill, then GRPO with rule rewards.

The pipeline that `python -m minids r1zero` runs, end to end:

  1. pretrain a tiny MoE model on the task mix (`minids.tasks`), mostly
     direct answers and partial working, some complete working;
  2. the gate: can the base write a complete, correct chain when led through
     it (`working_accuracy` >= 0.8)? The step skill appears abruptly and at a
     seed-dependent step, so a base that fails is pretrained further, in
     chunks of `EXTEND_STEPS` (each a fresh warm-up and cosine, a fresh data
     stream), until it passes or `max_pretrain_steps` is spent. If it never
     passes, RL has nothing to amplify, and the run stops unless forced;
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
EXTEND_STEPS = 1500  # pretraining steps per extra chunk when the base fails the gate


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
    max_pretrain_steps: int = integer(9000, ge=0)  # budget: extra chunks of pretraining while the gate fails (not when forced)

    def __post_init__(self):
        validate(self)


def with_seed(settings: R1ZeroSettings) -> R1ZeroSettings:
    """Propagate the run's seed and device into every stage."""
    return replace(settings,
                   pretrain=replace(settings.pretrain, seed=settings.seed, device=settings.device),
                   grpo=replace(settings.grpo, seed=settings.seed, device=settings.device))


def gate_problems(settings: R1ZeroSettings):
    """The fixed evaluation set of the run (seed 99, drawn from the run's task)."""
    return eval_problems(settings.eval_size, seed=99, config=settings.task)


def check_fits(settings: R1ZeroSettings, config: ModelConfig, tok) -> None:
    """Refuse, before any work, a task whose complete chain cannot be written within the limits."""
    t = settings.task
    big = (t.modulus - 1) if t.modulus else t.max_operand * t.max_operands  # the longest result
    steps = [f"{big}{t.ops[0]}{t.max_operand}={big}"] * (t.max_operands - 1)
    prompt = "<|bos|>Q:" + t.ops[0].join([str(t.max_operand)] * t.max_operands) + "=?"
    completion = f"<think>{','.join(steps)}</think><answer>{big}</answer><|eos|>"
    n_completion = len(tok.encode(completion, allowed_special="all"))
    # the longest pretraining document: every step corrected and padded, where the variants allow it
    step = f"{big}{t.ops[0]}{t.max_operand}={big}"
    worst = f"{step} wait {step}" if t.share_correction else step
    working = ("," + "." * t.filler_max).join([worst] * (t.max_operands - 1))
    doc = prompt + f"<think>{working}</think><answer>{big}</answer><|eos|>"
    n_doc = len(tok.encode(doc, allowed_special="all"))
    if n_completion > settings.grpo.max_completion_length:
        raise ValueError(f"a complete chain of {t.max_operands} operands takes up to {n_completion} tokens, more "
                         f"than --max-completion-length {settings.grpo.max_completion_length}: RL could never "
                         f"write one; raise it or lower --max-operands")
    if n_doc > config.max_seq_len:
        raise ValueError(f"a document of {t.max_operands} operands takes up to {n_doc} tokens, more than the "
                         f"model's context ({config.max_seq_len}); lower --max-operands")


def pretrain_to_gate(model, tok, settings: R1ZeroSettings, out: Path, progress: bool = True, log=print,
                     restart: bool = False):
    """Pretrain as configured, then in extra chunks while the gate fails and the budget lasts
    (never when forced: a forced run is a control on the base its configured pretraining gives).

    Returns (interrupted, records): one record per stage with its steps, cumulative steps and
    the gate's working accuracy, plus the pretraining history (cumulative step numbers).
    """
    problems = gate_problems(settings)
    stages, history, used = [], [], 0
    train, checkpoint = settings.pretrain, out / "base.pt"
    while True:
        pre = pretrain(model, tok, settings.task, train, checkpoint=checkpoint, progress=progress,
                       resume=not restart)
        if pre.interrupted:
            return True, stages, history
        history += [{**r, "step": r["step"] + used} for r in pre.history]
        used += train.steps
        stages.append({"steps": train.steps, "total_steps": used, "checkpoint": checkpoint.name,
                       "working_accuracy": working_accuracy(model, tok, problems)})
        if (stages[-1]["working_accuracy"] >= GATE or settings.force  # forced: RL on the base as configured
                or used + EXTEND_STEPS > settings.max_pretrain_steps):
            return False, stages, history
        log(f"gate not passed after {used} pretraining steps (working accuracy "
            f"{stages[-1]['working_accuracy']:.2f}); pretraining {EXTEND_STEPS} more")
        train = replace(settings.pretrain, steps=EXTEND_STEPS, seed=settings.seed + 7919 * len(stages))
        checkpoint = out / f"base-more{len(stages)}.pt"


def onset_step(history: list[dict], threshold: float = GATE) -> int | None:
    """The first pretraining step whose periodic evaluation reached `threshold` working accuracy."""
    return next((r["step"] for r in history if r.get("eval/working_accuracy", -1) >= threshold), None)


def evaluate_model(model, tok, settings: R1ZeroSettings) -> dict:
    problems = gate_problems(settings)
    sampled = rollout_stats(model, tok, problems, temperature=1.0, samples=settings.eval_samples,
                            max_new_tokens=settings.grpo.max_completion_length, seed=settings.seed)
    greedy = rollout_stats(model, tok, problems, temperature=0,
                           max_new_tokens=settings.grpo.max_completion_length)
    return {"sampled_accuracy": sampled["accuracy"], "greedy_accuracy": greedy["accuracy"],
            "format": sampled["format"], "think_length": sampled["think_length"],
            "gold_chain": sum(sampled["gold"]) / max(1, len(sampled["gold"])),
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

    check_fits(settings, config, tok)

    torch.manual_seed(settings.seed)
    model = Transformer(config).to(device)
    t0 = time.perf_counter()
    interrupted, stages, pre_history = pretrain_to_gate(model, tok, settings, out, progress, log, restart=restart)
    timings["pretrain_s"] = time.perf_counter() - t0
    if interrupted:
        return {"interrupted": "pretrain"}
    with open(out / "pretrain_history.jsonl", "w") as f:
        for record in pre_history:
            f.write(json.dumps({k: v for k, v in record.items() if k not in ("load", "bias")}) + "\n")
    pretraining = {"steps_used": stages[-1]["total_steps"], "stages": stages, "onset_step": onset_step(pre_history)}
    before = evaluate_model(model, tok, settings)
    log(f"base: working accuracy {before['working_accuracy']:.2f}, sampled accuracy "
        f"{before['sampled_accuracy']:.2f}, think {before['think_length']:.1f} tokens "
        f"({pretraining['steps_used']} pretraining steps)")
    if before["working_accuracy"] < GATE and not settings.force:
        t = settings.task
        raise GateError(
            f"after {pretraining['steps_used']} pretraining steps the base writes a complete correct chain for "
            f"only {before['working_accuracy']:.0%} of problems (the gate is {GATE:.0%}): RL would have no skill "
            f"to amplify. Try a larger budget (--max-pretrain-steps, now {settings.max_pretrain_steps}), more "
            f"complete working (--share-complete, now {t.share_complete:g}), shorter problems (--max-operands, "
            f"now {t.max_operands}) or another --seed; or pass --force to run RL anyway as a control.")

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
        "pretraining": pretraining, "gate_passed": before["working_accuracy"] >= GATE,
        "accuracy_gain": after["sampled_accuracy"] - before["sampled_accuracy"],
        "think_growth": after["think_length"] / max(before["think_length"], 1e-9),
        "timings": timings,
        "settings": {"task": asdict(settings.task), "pretrain": asdict(settings.pretrain),
                     "grpo": asdict(settings.grpo), "model": config.to_dict(), "force": settings.force,
                     "max_pretrain_steps": settings.max_pretrain_steps},
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


def read_run(folder: str | Path) -> dict:
    """The files of one r1zero output folder that exist: summary, history, pretrain_history, passk."""
    folder = Path(folder)
    run = {"name": folder.name}
    if (folder / "summary.json").exists():
        run["summary"] = json.loads((folder / "summary.json").read_text())
    if (folder / "passk.json").exists():
        run["passk"] = json.loads((folder / "passk.json").read_text())
    for key in ("history", "pretrain_history"):
        if (folder / f"{key}.jsonl").exists():
            run[key] = read_history(folder / f"{key}.jsonl")
    return run


def shipped_sweep(group: str) -> dict[str, dict]:
    """Every run of a shipped sweep ("robust", "beyond"), by name, as `read_run` gives it.

    Made by the bench scripts named in bench/R1ZERO.md (e.g. `bash bench/r1zero_device.sh cuda`).
    """
    folder = RUNS_DIR / group
    if not folder.is_dir():
        sweeps = sorted(p.name for p in RUNS_DIR.iterdir() if p.is_dir() and not (p / "history.jsonl").exists())
        raise ValueError(f"no shipped sweep {group!r}; choose one of {sweeps}")
    return {p.name: read_run(p) for p in sorted(folder.iterdir()) if p.is_dir()}


def gate_row(run: dict, default_steps: int = TrainConfig().steps) -> dict:
    """One run of a sweep folder named VARIANT_sSEED -> the done-when row: the gate with the default
    schedule alone, the skill-onset step, the pretraining steps used, and the before -> after numbers
    (None where the run stopped at the gate)."""
    variant, _, seed = run["name"].rpartition("_s")
    h = run.get("pretrain_history", [])
    at_default = next((r["eval/working_accuracy"] for r in h
                       if r["step"] == default_steps and "eval/working_accuracy" in r), None)
    row = {"variant": variant, "seed": int(seed), "working_at_default": at_default, "onset_step": onset_step(h),
           "steps_used": h[-1]["step"] if h else None, "gate_passed": False}
    s = run.get("summary")
    if s:
        b, a = s["before"], s["after"]
        row.update(steps_used=s["pretraining"]["steps_used"], gate_passed=s["gate_passed"],
                   working=b["working_accuracy"], accuracy=(b["sampled_accuracy"], a["sampled_accuracy"]),
                   think=(b["think_length"], a["think_length"]), gold_chain=(b["gold_chain"], a["gold_chain"]))
    return row
