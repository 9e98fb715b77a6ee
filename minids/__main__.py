"""Command line: `python -m minids <command> --help`.

    lab        start JupyterLab on the notebooks, with classroom settings (no news, no update checks)
    pretrain   pretrain the tiny MoE model on the task mix and save a checkpoint
    r1zero     pretraining, the gate, then GRPO; history, summary, checkpoints and an HTML report
    generate   sample completions from a checkpoint
    info       parameter counts of a configuration
    editions   keep the translated notebooks (notebooks/zh/) in step with the English ones
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


def _field_comments(cls) -> dict[str, str]:
    """The trailing '# comment' of each field in a dataclass's source: the help of its flag."""
    import inspect
    import re
    return dict(re.findall(r"^\s+(\w+):[^#\n]*#\s*(.*)$", inspect.getsource(cls), re.M))


def _value_parser(hint):
    """A string -> value function for a field's type (int, float, str, bool, or X | None)."""
    import types
    import typing
    args = typing.get_args(hint)
    if type(hint) is types.UnionType or typing.get_origin(hint) is typing.Union:
        inner = _value_parser(next(a for a in args if a is not type(None)))

        def parse_optional(text):
            return None if text.lower() == "none" else inner(text)
        parse_optional.__name__ = f"{inner.__name__} or none"  # argparse names it in "invalid ... value"
        return parse_optional
    if hint is bool:
        def parse_bool(text):
            if text.lower() in ("1", "true", "yes"):
                return True
            if text.lower() in ("0", "false", "no"):
                return False
            raise ValueError(text)
        parse_bool.__name__ = "true/false"
        return parse_bool
    return hint


def add_config_flags(parser, cls, title: str | None = None):
    """One flag per field of the dataclass `cls`, named after the field in dashes (`--share-complete`).

    Generated from the fields, so a new field gets its flag without touching the CLI. A flag left
    out keeps the config's value (it sets no attribute at all, so None stays a value one can give).
    """
    import typing
    from dataclasses import MISSING, fields
    hints, comments = typing.get_type_hints(cls), _field_comments(cls)
    group = parser.add_argument_group(title or f"{cls.__name__} (every field; default: the dataclass's)")
    for f in fields(cls):
        default = f.default if f.default is not MISSING else "required"
        group.add_argument("--" + f.name.replace("_", "-"), dest=f"{cls.__name__}.{f.name}",
                           type=_value_parser(hints[f.name]), default=argparse.SUPPRESS, metavar=f.name.upper(),
                           help=f"{comments.get(f.name, '')} (default: {default})".replace("%", "%%"))


def config_from_args(cls, args, base=None):
    """`base` (default: cls()) with every field given on the command line replaced; checked by cls."""
    from dataclasses import fields
    given = {f.name: getattr(args, f"{cls.__name__}.{f.name}") for f in fields(cls)
             if hasattr(args, f"{cls.__name__}.{f.name}")}
    return replace(base if base is not None else cls(), **given)


def _add_device(p):
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps")


# ---- architecture flags (MLA, MTP): one block, shared by pretrain and r1zero
def _add_architecture(p, mtp: bool = True):
    p.add_argument("--attention", default="mha", choices=["mha", "mla"],
                   help="mha: multi-head attention; mla: DeepSeek-V3's latent attention, as many parameters")
    p.add_argument("--kv-lora-rank", type=int, default=None, help="mla: width of the cached latent "
                   "(default: the rank that matches mha's parameters)")
    if mtp:
        p.add_argument("--mtp-depth", type=int, default=0, help="multi-token prediction modules (0: off; V3: 1)")
        p.add_argument("--mtp-loss-weight", type=float, default=0.3, help="lambda, the MTP loss weight")


def _model_config(args, vocab_size: int, **fields):
    """The default ModelConfig with the architecture flags applied."""
    from .mla import matched_mla_config
    from .model import ModelConfig
    config = ModelConfig(vocab_size=vocab_size, mtp_depth=getattr(args, "mtp_depth", 0),
                         mtp_loss_weight=getattr(args, "mtp_loss_weight", 0.3), **fields)
    if args.attention == "mla":
        rank = {} if args.kv_lora_rank is None else {"kv_lora_rank": args.kv_lora_rank}
        config = matched_mla_config(config, **rank)
    return config
# ----


def cmd_lab(args):
    """Copy the classroom settings into this environment, then hand over to `jupyter lab`."""
    from importlib import resources
    settings = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    if not settings.exists():
        settings.parent.mkdir(parents=True, exist_ok=True)
        settings.write_text(resources.files("minids.data").joinpath("lab_overrides.json").read_text())
    notebooks = Path(args.notebooks)
    if args.lang != "en":
        notebooks = notebooks / args.lang
    if not notebooks.is_dir():
        sys.exit(f"no notebooks folder at {notebooks.resolve()}; pass --notebooks PATH")
    jupyter = shutil.which("jupyter", path=str(Path(sys.executable).parent)) or shutil.which("jupyter")
    if jupyter is None:
        sys.exit("jupyter is not installed in this environment: pip install jupyterlab")
    argv = [jupyter, "lab", str(notebooks), "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            *lab_options(args.extra, is_root())]
    os.execv(jupyter, argv)


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def lab_options(extra: list[str], root: bool) -> list[str]:
    """The options passed on to `jupyter lab`: as root (Docker, a cloud VM, WSL set up as root) Jupyter
    refuses to start without --allow-root, so add it, and say so."""
    if root and "--allow-root" not in extra:
        print("running as root (a container or a VM set up as root): passing --allow-root to jupyter lab",
              file=sys.stderr)
        extra = [*extra, "--allow-root"]
    if any(a.startswith("--ip") for a in extra):
        print("to open it from another machine, use the URL with the token that jupyter prints below, with "
              "this machine's address in place of the host (or forward the port: ssh -L 8888:localhost:8888 HOST)",
              file=sys.stderr)
    return extra


def cmd_editions(args):
    """Rebuild the editions' code cells from English; list the markdown cells to (re)translate."""
    from .editions import sync_all

    translated = {}
    for item in args.translated:
        name, _, key = item.partition(":")
        if not key:
            raise ValueError(f"--translated takes NOTEBOOK:CELL_ID, got {item!r}")
        translated.setdefault(name, []).append(key)
    reports = sync_all(Path(args.notebooks), args.lang, write=not args.check, translated=translated)
    todo = 0
    for r in reports:
        for line in r.lines():
            print(line)
        # after a write only a translator's work is left; --check also counts what sync would write
        todo += (not r.in_sync) if args.check else len(r.todo) + (not r.added and bool(r.removed))
    if todo:
        print(f"{todo} item(s) need attention (see above)")
        sys.exit(1)


def cmd_pretrain(args):
    import torch
    from .model import Transformer
    from .tasks import TaskConfig
    from .tokenizer import default_tokenizer
    from .train import TrainConfig, pretrain

    from .device import resolve_device
    from .paths import ensure_writable_file

    task = config_from_args(TaskConfig, args)  # checked before any work starts
    tok = default_tokenizer()
    config = _model_config(args, tok.vocab_size, balance=args.balance)
    train = TrainConfig(steps=args.steps, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                        device=args.device)
    resolve_device(train.device)
    ensure_writable_file(args.out)
    torch.manual_seed(args.seed)
    model = Transformer(config)
    counts = model.num_params()
    print(f"model: {counts['total']:,} parameters, {counts['active']:,} active per token"
          + (f" (+{counts['mtp']:,} in MTP modules)" if "mtp" in counts else "")
          + f", {config.attention}, KV cache {model.kv_cache_bytes_per_token():,} bytes/token; "
          f"checkpoint {args.out}")
    print(f"task: {task}")
    result = pretrain(model, tok, task, train, checkpoint=args.out, resume=not args.restart)
    h = result.history
    if h:
        evals = [r for r in h if "eval/working_accuracy" in r]
        print(f"loss {h[0]['loss']:.3f} (step {h[0]['step']}) -> {h[-1]['loss']:.3f} (step {h[-1]['step']})")
        if "mtp_loss" in h[-1]:
            print(f"mtp loss {h[0]['mtp_loss']:.3f} -> {h[-1]['mtp_loss']:.3f}")
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
    task = config_from_args(TaskConfig, args, task)  # every task flag, checked before any work starts
    grpo = GRPOConfig(steps=args.grpo_steps, loss_type=args.loss_type, scale_rewards=args.scale_rewards,
                      beta=args.beta, max_completion_length=args.max_completion_length,
                      mask_truncated_completions=args.mask_truncated, format_only=args.format_only)
    from .tokenizer import default_tokenizer
    model = _model_config(args, default_tokenizer().vocab_size) if args.attention != "mha" else None
    settings = R1ZeroSettings(seed=args.seed, device=args.device, task=task, grpo=grpo, model=model,
                              pretrain=TrainConfig(steps=args.pretrain_steps), force=args.force or args.no_chain,
                              max_pretrain_steps=args.max_pretrain_steps)
    out = Path(args.out or f"r1zero-{datetime.now():%Y%m%d-%H%M%S}")
    print(f"writing to {out}/")
    try:
        summary = run_r1zero(out, settings, restart=args.restart)
    except GateError as e:
        sys.exit(f"refusing to start RL: {e}")
    if "interrupted" in summary:
        print(f"interrupted during {summary['interrupted']}; run the same command again to resume")
        return
    print(summary_table(summary))
    print(f"history: {out / 'history.jsonl'}\nreport:  {out / 'report.html'}")


def load_named(checkpoint: str):
    """A checkpoint file, or the name of a shipped one ("r1zero-base", "r1zero-rl") as load_pretrained takes."""
    from .checkpoint import SHIPPED, load_checkpoint, load_pretrained
    if checkpoint in SHIPPED and not Path(checkpoint).exists():
        return load_pretrained(checkpoint)
    if not Path(checkpoint).is_file():
        raise ValueError(f"no checkpoint file {checkpoint!r}; give a file made by `pretrain`/`r1zero` or a "
                         f"shipped model's name: {', '.join(SHIPPED)}")
    return load_checkpoint(checkpoint)


def task_prompt(text: str) -> str:
    """What the user typed -> the model's prompt; a ValueError (one line) when it is not a question of the task.

    '7+5-9+3' -> '<|bos|>Q:7+5-9+3=?'. A full prompt starting with <|bos|> is taken as it is.
    """
    from .tasks import TaskConfig, parse_problem
    if text.startswith("<|bos|>"):
        return text
    problem = parse_problem(text)
    task = TaskConfig()
    if not task.min_operands <= len(problem.operands) <= task.max_operands:
        print(f"note: the model was trained on {task.min_operands} to {task.max_operands} numbers a question; "
              f"this one has {len(problem.operands)}, expect a weaker answer", file=sys.stderr)
    return problem.prompt


def cmd_generate(args):
    from .generate import generate

    prompt = task_prompt(args.prompt)
    ckpt = load_named(args.checkpoint)
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

    from .paths import ensure_writable_folder

    run, dst = Path(args.run), Path(args.dest)
    for stage in ("base", "rl"):
        if not (run / f"{stage}.pt").is_file():
            raise FileNotFoundError(f"no {stage}.pt in {run}: give an r1zero output folder")
    ensure_writable_folder(dst)
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


def _task_config():
    from .tasks import TaskConfig
    return TaskConfig


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
    p.add_argument("--lang", default="en", choices=["en", "zh"],
                   help="en: the English notebooks; zh: the Chinese edition (NOTEBOOKS/zh)")
    p.epilog = ("Any further options (e.g. --port 8899 --no-browser) are passed on to jupyter lab; as root, "
                "--allow-root is added. From another machine or a container: --ip 0.0.0.0 --no-browser, then open "
                "the printed URL (with its token) at this machine's address, or forward the port with ssh -L.")
    p.set_defaults(func=cmd_lab)

    p = sub.add_parser("pretrain", help="pretrain the tiny MoE model on the synthetic task mix")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--balance", default="aux_free", choices=["aux_free", "aux_loss", "none"])
    p.add_argument("--out", default="pretrain.pt", help="checkpoint file (resumed if it exists)")
    p.add_argument("--restart", action="store_true", help="ignore (and overwrite) an existing checkpoint instead "
                                                         "of resuming it")
    _add_architecture(p)
    _add_device(p)
    add_config_flags(p, _task_config(), "task (every TaskConfig field)")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("r1zero", help="pretrain, check the gate, then GRPO with rule rewards")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output folder (default: a new r1zero-<time> folder)")
    p.add_argument("--pretrain-steps", type=int, default=3000)
    p.add_argument("--max-pretrain-steps", type=int, default=9000,
                   help="budget: while the base fails the gate, pretrain in extra chunks of 1500 steps up to this "
                        "(not with --force)")
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
    p.add_argument("--restart", action="store_true", help="ignore (and overwrite) the checkpoints of an earlier "
                                                         "run in --out instead of resuming them")
    _add_architecture(p, mtp=False)
    _add_device(p)
    add_config_flags(p, _task_config(), "task (every TaskConfig field; applied after --variant/--no-chain)")
    p.set_defaults(func=cmd_r1zero)

    p = sub.add_parser("generate", help="sample completions from a checkpoint")
    p.add_argument("prompt", help="a question of the task, single digits joined by + or - such as 7+5-9+3 "
                                  "(a running sum mod 10), or a full prompt starting with <|bos|>")
    p.add_argument("--checkpoint", default="r1zero-rl",
                   help="a checkpoint file, or a shipped model: r1zero-rl (default) or r1zero-base")
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

    p = sub.add_parser("editions", help="keep the translated notebooks in step with the English ones")
    esub = p.add_subparsers(dest="action", required=True)
    e = esub.add_parser("sync", help="rebuild code cells from English; list markdown cells to (re)translate")
    e.add_argument("--notebooks", default="notebooks", help="the English notebooks (default: notebooks)")
    e.add_argument("--lang", default="zh", choices=["zh"], help="the edition (default: zh)")
    e.add_argument("--check", action="store_true", help="write nothing; exit 1 if anything is out of date")
    e.add_argument("--translated", action="append", default=[], metavar="NOTEBOOK:CELL_ID",
                   help="this markdown cell's translation now follows the current English (repeatable)")
    e.set_defaults(func=cmd_editions)
    _add_classroom(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "lab":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    try:
        if args.command != "lab":
            from .device import use_cpu_threads
            use_cpu_threads()  # half the cores: see minids.device.cpu_threads (MINIDS_THREADS=N overrides)
        args.func(args)
    except (ValueError, OSError) as e:  # bad input, a refused resume, an unwritable path, a full disk
        sys.exit(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}")


if __name__ == "__main__":
    main()
