"""One resumable training loop, shared by pretraining, GRPO and distillation.

Every trainer here does the same things around its own step: resume from a
checkpoint (after checking it is the *same* run), hold Ctrl-C until a step has
fully landed, update a progress bar, hand each record to a callback, save
every k steps, save on Ctrl-C and at the end. Written once, here, so the three
cannot drift apart:

    state = resume_from(checkpoint, model, tokenizer, {"task": ..., "train": ...}, device)
    interrupted = run_loop(one_step, start=..., steps=..., history=history, save=save, ...)

`one_step(step)` runs step `step` (0-based) and returns its record, which
lands in the history together with the step or not at all. Resuming refuses,
in one line, a checkpoint made with another model config (balance mode
included), tokenizer or settings, naming what differs and how to start fresh.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path
from typing import Callable

from .checkpoint import load_checkpoint

RESTART_HINT = "to start fresh pass resume=False (command line: --restart), or use another checkpoint path"


class ResumeMismatch(ValueError):
    """A checkpoint that belongs to another run than the one asked for."""


_deferring = threading.local()


@contextlib.contextmanager
def defer_interrupt():
    """Hold Ctrl-C until the block ends, so an optimiser step is never half applied.

    Re-entrant: an inner block inside an outer one defers to the outer's end.
    """
    if threading.current_thread() is not threading.main_thread() or getattr(_deferring, "on", False):
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda *args: caught.append(args))
    _deferring.on = True
    try:
        yield
    finally:
        _deferring.on = False
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def _flat(d, prefix: str) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def differences(recorded: dict, wanted: dict) -> list[str]:
    """'name: X in the checkpoint, Y now' for every leaf that differs between two nested dicts."""
    a, b = _flat(recorded, ""), _flat(wanted, "")
    missing = object()
    out = []
    for key in list(b) + [k for k in a if k not in b]:
        x, y = a.get(key, missing), b.get(key, missing)
        if x is missing:
            out.append(f"{key}: not recorded in the checkpoint, {y!r} now")
        elif y is missing:
            out.append(f"{key}: {x!r} in the checkpoint, absent now")
        elif x != y or type(x) is not type(y) and not (isinstance(x, (int, float)) and isinstance(y, (int, float))):
            out.append(f"{key}: {x!r} in the checkpoint, {y!r} now")
    return out


def resume_from(checkpoint, model, tokenizer, settings: dict, device="cpu", resume: bool = True,
                needs=("step", "history", "optimizer")) -> dict | None:
    """The state of `checkpoint` if it exists, resume is True and it was made by this very run; else None.

    Compares the checkpoint's model config (balance mode included), tokenizer
    and each entry of `settings` (e.g. {"task": asdict(task), "train":
    asdict(config)}) with the request; any difference is a one-line
    ResumeMismatch naming it. On success the checkpoint's weights are copied
    into `model` and its training state returned.
    """
    if checkpoint is None or not resume or not Path(checkpoint).exists():
        return None
    ckpt = load_checkpoint(checkpoint, device)
    state = ckpt.state
    diffs = differences({"model": ckpt.config.to_dict()}, {"model": model.config.to_dict()})
    if ckpt.tokenizer.to_dict() != tokenizer.to_dict():
        diffs.append(f"tokenizer: {ckpt.tokenizer.vocab_size} tokens in the checkpoint, {tokenizer.vocab_size} "
                     f"now" if ckpt.tokenizer.vocab_size != tokenizer.vocab_size else "tokenizer: other merges")
    diffs += differences({k: state.get(k, {}) for k in settings}, settings)
    lacking = [k for k in needs if k not in state]
    if lacking and not diffs:
        diffs.append(f"no training state ({', '.join(lacking)}) in the checkpoint: an exported or foreign file")
    if diffs:
        more = f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else ""
        raise ResumeMismatch(f"checkpoint {checkpoint} was made by another run, not resuming it: "
                             f"{'; '.join(diffs[:3])}{more}; {RESTART_HINT}")
    model.load_state_dict(ckpt.model.state_dict())
    return state


def say_interrupted(step: int, checkpoint) -> None:
    print(f"\ninterrupted after step {step}" + (f"; saved to {checkpoint}, run again to resume"
                                                 if checkpoint is not None else ""))


def run_loop(one_step: Callable[[int], dict], *, start: int, steps: int, history: list, save: Callable[[int], None],
             checkpoint_every: int = 0, after: Callable[[int, dict], None] | None = None,
             callback: Callable[[dict], None] | None = None, postfix: Callable[[dict], dict] | None = None,
             desc: str = "train", progress: bool = True, checkpoint=None) -> bool:
    """Run steps start..steps-1; returns True if Ctrl-C stopped it (after saving).

    For each step: `one_step(step)` -> record, appended to history while Ctrl-C
    is held (the step and its record land together); then `after(step, record)`
    (e.g. an evaluation that adds to the record), the progress bar, `callback(record)`,
    and `save(step + 1)` every `checkpoint_every` steps. At the end, or on Ctrl-C,
    `save(last finished step)`. An error (e.g. a full disk) is raised as it is.
    """
    from tqdm.auto import tqdm

    bar = tqdm(total=steps, initial=start, desc=desc, dynamic_ncols=True, **({} if progress else {"disable": True}))
    interrupted = False
    try:
        for step in range(start, steps):
            with defer_interrupt():
                record = one_step(step)
                history.append(record)
            if after is not None:
                after(step, record)
            bar.update(1)
            bar.set_postfix(**(postfix(record) if postfix else {}))
            if callback is not None:
                callback(record)
            if checkpoint_every and (step + 1) % checkpoint_every == 0:
                save(step + 1)
    except KeyboardInterrupt:
        interrupted = True
        say_interrupted(history[-1]["step"] if history else start, checkpoint)
    finally:
        bar.close()
    save(history[-1]["step"] if history else start)
    return interrupted
