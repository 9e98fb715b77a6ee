"""Command line: `python -m minids <command> --help`.

    lab        start JupyterLab on the notebooks, with classroom settings (no news, no update checks)
    pretrain   pretrain the tiny MoE model on the task mix and save a checkpoint
    r1zero     pretraining, the gate, then GRPO; history, summary, checkpoints and an HTML report
    generate   sample completions from a checkpoint
    info       parameter counts of a configuration
    present    one notebook as an app for a projector: narrative and widgets, no code, offline (Voila)
    book       every notebook executed into a static site that opens offline from the file system
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path


def _add_device(p):
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps")


def cmd_lab(args):
    """Copy the classroom settings into this environment, then hand over to `jupyter lab`."""
    from importlib import resources
    settings = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    if not settings.exists():
        settings.parent.mkdir(parents=True, exist_ok=True)
        settings.write_text(resources.files("minids.data").joinpath("lab_overrides.json").read_text())
    notebooks = Path(args.notebooks)
    if not notebooks.is_dir():
        sys.exit(f"no notebooks folder at {notebooks.resolve()}; pass --notebooks PATH")
    jupyter = shutil.which("jupyter", path=str(Path(sys.executable).parent)) or shutil.which("jupyter")
    if jupyter is None:
        sys.exit("jupyter is not installed in this environment: pip install jupyterlab")
    argv = [jupyter, "lab", str(notebooks), "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            *args.extra]
    os.execv(jupyter, argv)


def cmd_pretrain(args):
    import torch
    from .model import ModelConfig, Transformer
    from .tasks import TaskConfig
    from .tokenizer import default_tokenizer
    from .train import TrainConfig, pretrain

    tok = default_tokenizer()
    config = ModelConfig(vocab_size=tok.vocab_size, balance=args.balance)
    train = TrainConfig(steps=args.steps, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                        device=args.device)
    torch.manual_seed(args.seed)
    model = Transformer(config)
    counts = model.num_params()
    print(f"model: {counts['total']:,} parameters, {counts['active']:,} active per token; "
          f"checkpoint {args.out}")
    result = pretrain(model, tok, TaskConfig(), train, checkpoint=args.out, resume=not args.restart)
    h = result.history
    if h:
        evals = [r for r in h if "eval/working_accuracy" in r]
        print(f"loss {h[0]['loss']:.3f} (step {h[0]['step']}) -> {h[-1]['loss']:.3f} (step {h[-1]['step']})")
        if evals:
            print(f"working accuracy {evals[-1]['eval/working_accuracy']:.2f}, direct-answer accuracy "
                  f"{evals[-1]['eval/acc_no_working']:.2f}")


def cmd_r1zero(args):
    from .grpo import GRPOConfig
    from .r1zero import GateError, R1ZeroSettings, run_r1zero, summary_table
    from .tasks import TaskConfig
    from .train import TrainConfig

    task = TaskConfig()
    if args.no_chain:  # control: the base never sees a complete chain
        task = replace(task, share_direct=0.5, share_partial=0.5, share_complete=0.0)
    if args.variant == "filler":
        task = replace(task, filler_max=3)
    elif args.variant == "correction":
        task = replace(task, share_correction=0.15)
    grpo = GRPOConfig(steps=args.grpo_steps, loss_type=args.loss_type, scale_rewards=args.scale_rewards,
                      beta=args.beta, max_completion_length=args.max_completion_length,
                      mask_truncated_completions=args.mask_truncated, format_only=args.format_only)
    settings = R1ZeroSettings(seed=args.seed, device=args.device, task=task, grpo=grpo,
                              pretrain=TrainConfig(steps=args.pretrain_steps), force=args.force or args.no_chain)
    out = Path(args.out or f"r1zero-{datetime.now():%Y%m%d-%H%M%S}")
    print(f"writing to {out}/")
    try:
        summary = run_r1zero(out, settings)
    except GateError as e:
        sys.exit(f"refusing to start RL: {e}")
    if "interrupted" in summary:
        print(f"interrupted during {summary['interrupted']}; run the same command again to resume")
        return
    print(summary_table(summary))
    print(f"history: {out / 'history.jsonl'}\nreport:  {out / 'report.html'}")


def cmd_generate(args):
    from .checkpoint import load_checkpoint
    from .generate import generate

    ckpt = load_checkpoint(args.checkpoint)
    prompt = args.prompt
    if not prompt.startswith("<|bos|>"):
        prompt = f"<|bos|>Q:{prompt.removesuffix('=?')}=?"
    out = generate(ckpt.model, ckpt.tokenizer, [prompt] * args.samples, args.max_new_tokens,
                   temperature=args.temperature, top_k=args.top_k, seed=args.seed)
    for text in out.texts:
        print(prompt + text)


def cmd_export(args):
    """Turn an r1zero run folder into the two small checkpoints shipped with the package."""
    from .checkpoint import export_checkpoint
    from .evaluate import rollout_stats, working_accuracy
    from .checkpoint import load_checkpoint
    from .tasks import eval_problems

    run, dst = Path(args.run), Path(args.dest)
    problems = eval_problems(SHIPPED_EVAL["size"], seed=SHIPPED_EVAL["seed"])
    for stage in ("base", "rl"):
        ckpt = load_checkpoint(run / f"{stage}.pt")
        greedy = rollout_stats(ckpt.model, ckpt.tokenizer, problems, temperature=0)
        info = {"eval": {**SHIPPED_EVAL, "greedy_accuracy": greedy["accuracy"],
                         "think_length": greedy["think_length"],
                         "working_accuracy": working_accuracy(ckpt.model, ckpt.tokenizer, problems)},
                "made_by": f"python -m minids r1zero --seed {args.seed} --device cpu --out RUN && "
                           f"python -m minids export RUN"}
        path = export_checkpoint(run / f"{stage}.pt", dst / f"r1zero-{stage}.pt", info)
        print(f"{path}: {path.stat().st_size / 1e6:.1f} MB, greedy accuracy {greedy['accuracy']:.3f}")


SHIPPED_EVAL = {"size": 128, "seed": 99}  # the fixed set a shipped checkpoint's accuracy is recorded on


def cmd_info(args):
    from .model import ModelConfig, Transformer
    from .tokenizer import default_tokenizer
    config = ModelConfig(vocab_size=default_tokenizer().vocab_size)
    counts = Transformer(config).num_params()
    print(json.dumps({"config": config.to_dict(), **counts}, indent=2))


# --------------------------------------------------------------------------- classroom: present, book


def cmd_present(args):
    """Serve one notebook with Voila and the presentation template (minids/classroom.py)."""
    from .classroom import free_port, resolve_notebook, voila_command

    notebooks = Path(args.notebooks) if args.notebooks else None
    path = resolve_notebook(args.notebook, lang=args.lang, notebooks=notebooks)
    if shutil.which("voila", path=str(Path(sys.executable).parent)) is None and shutil.which("voila") is None:
        sys.exit("voila is not installed in this environment: pip install voila")
    port = args.port or free_port()
    argv, env = voila_command(path, port, open_browser=not args.no_browser)
    if args.fast:
        env["MINIDS_FAST"] = "1"
    print(f"presenting {path} at http://127.0.0.1:{port}/ (the page appears once every cell has run; "
          f"Ctrl-C to stop)", flush=True)
    os.execve(argv[0], argv, env)


def cmd_book(args):
    from .book import build_book
    from .classroom import default_notebooks_dir

    only = args.only.split(",") if args.only else None
    try:
        build_book(args.out, Path(args.notebooks) if args.notebooks else default_notebooks_dir(), only=only,
                   fast=True if args.fast else None, timeout=args.timeout)
    except RuntimeError as e:
        sys.exit(f"error: {e}")


def _add_classroom(sub):
    p = sub.add_parser("present", help="present one notebook full-screen: narrative and widgets, no code, offline")
    p.add_argument("notebook", help="a number such as 04, a name such as 04_moe_routing, or a path")
    p.add_argument("--lang", default="en", help="en, or zh for the Chinese edition in notebooks/zh/")
    p.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default 8866, or a free one)")
    p.add_argument("--no-browser", action="store_true", help="only print the URL")
    p.add_argument("--fast", action="store_true",
                   help="MINIDS_FAST=1: short live training runs, so the page is up in seconds")
    p.add_argument("--notebooks", default=None, help="the notebooks folder (default: ./notebooks)")
    p.set_defaults(func=cmd_present)

    p = sub.add_parser("book", help="execute every notebook into a static site that opens offline")
    p.add_argument("--out", default="book", help="output folder (default: book)")
    p.add_argument("--only", default=None, help="comma-separated notebook numbers, e.g. 00,04 (default: all)")
    p.add_argument("--fast", action="store_true", help="MINIDS_FAST=1: the short CI setting")
    p.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell")
    p.add_argument("--notebooks", default=None, help="the notebooks folder (default: ./notebooks)")
    p.set_defaults(func=cmd_book)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m minids", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("lab", help="start JupyterLab on the notebooks (classroom settings)")
    p.add_argument("--notebooks", default="notebooks", help="folder to open (default: notebooks)")
    p.epilog = "Any further options (e.g. --port 8899 --no-browser) are passed on to jupyter lab."
    p.set_defaults(func=cmd_lab)

    p = sub.add_parser("pretrain", help="pretrain the tiny MoE model on the synthetic task mix")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--balance", default="aux_free", choices=["aux_free", "aux_loss", "none"])
    p.add_argument("--out", default="pretrain.pt", help="checkpoint file (resumed if it exists)")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    _add_device(p)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("r1zero", help="pretrain, check the gate, then GRPO with rule rewards")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output folder (default: a new r1zero-<time> folder)")
    p.add_argument("--pretrain-steps", type=int, default=3000)
    p.add_argument("--grpo-steps", type=int, default=100)
    p.add_argument("--loss-type", default="dr_grpo", choices=["grpo", "dr_grpo"])
    p.add_argument("--scale-rewards", default="none", choices=["group", "none"])
    p.add_argument("--beta", type=float, default=0.0, help="KL coefficient to the base (0: off)")
    p.add_argument("--max-completion-length", type=int, default=64)
    p.add_argument("--mask-truncated", action="store_true", help="drop truncated completions from the loss")
    p.add_argument("--format-only", action="store_true", help="control: reward the format, not correctness")
    p.add_argument("--no-chain", action="store_true",
                   help="control: pretrain without any complete chain (implies --force)")
    p.add_argument("--variant", choices=["filler", "correction"], default=None,
                   help="filler: working may be padded with dots; correction: 'wrong wait right' steps")
    p.add_argument("--force", action="store_true", help="start RL even if the base fails the gate")
    _add_device(p)
    p.set_defaults(func=cmd_r1zero)

    p = sub.add_parser("generate", help="sample completions from a checkpoint")
    p.add_argument("prompt", help="a question such as 7+5-9+3, or a full prompt starting with <|bos|>")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("export", help="write a run's checkpoints, slimmed, as the package's shipped ones")
    p.add_argument("run", help="an r1zero output folder (holding base.pt and rl.pt)")
    p.add_argument("--dest", default=str(Path(__file__).parent / "data" / "checkpoints"))
    p.add_argument("--seed", type=int, default=0, help="the seed the run used (recorded)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("info", help="parameter counts of the default configuration")
    p.set_defaults(func=cmd_info)

    _add_classroom(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "lab":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
