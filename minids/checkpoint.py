"""One-file checkpoints: model config + weights + tokenizer + training state.

Two promises:
  * Nothing is lost. A checkpoint is written to a temporary file in the same
    folder, flushed to disk, then renamed over the old one. A rename is atomic,
    so a run killed mid-save leaves the previous checkpoint intact.
  * Loading never runs code. `torch.load(weights_only=True)` unpickles only
    tensors and plain containers (dict, list, str, numbers); a file crafted to
    execute something on load is refused with a clear error.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .model import ModelConfig, Transformer
from .tokenizer import Tokenizer

FORMAT = "minids-checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    model: Transformer
    tokenizer: Tokenizer
    state: dict  # training state: step, history, optimizer, configs, ... (may be empty)
    path: Path | None = None

    @property
    def config(self) -> ModelConfig:
        return self.model.config


def save_checkpoint(path, model: Transformer, tokenizer: Tokenizer, state: dict | None = None) -> Path:
    """Atomically write model, tokenizer and training state to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": model.config.to_dict(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "tokenizer": tokenizer.to_dict(),
        "state": state or {},
    }
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def load_checkpoint(path, device: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint safely; any problem becomes a ValueError that says what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message opens with boilerplate; the line that says what was found comes later
        lines = [s.strip().removeprefix("WeightsUnpickler error:").strip() for s in str(e).splitlines()]
        detail = next((s for s in lines if s and not s.startswith(("Weights only load failed", "(1)", "(2)",
                                                                   "Please file", "Check the documentation"))),
                      type(e).__name__)
        if "GLOBAL" in str(e) or "allowlisted" in str(e):  # an object beyond tensors and plain data
            raise ValueError(f"refused to load {path}: it holds objects other than tensors and plain data "
                             f"(a checkpoint that would run code when loaded). Details: {detail}") from None
        raise ValueError(f"{path} is not a readable checkpoint (corrupt file, or not a PyTorch checkpoint): "
                         f"{detail}") from None
    except Exception as e:  # RuntimeError, EOFError, BadZipFile, OSError, and KeyError etc. from garbage
        raise ValueError(f"{path} is not a readable checkpoint (truncated or corrupt file): "
                         f"{type(e).__name__}" + (f": {str(e).splitlines()[0]}" if str(e) else "")) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a minids checkpoint (no '{FORMAT}' marker)")
    if payload.get("version") != VERSION:
        raise ValueError(f"{path} has checkpoint version {payload.get('version')!r}; "
                         f"this minids reads version {VERSION}")
    missing = {"model_config", "model", "tokenizer"} - set(payload)
    if missing:
        raise ValueError(f"{path} is missing {sorted(missing)}")
    try:
        config = ModelConfig.from_dict(payload["model_config"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path} has an invalid model config: {e}") from None
    try:
        tokenizer = Tokenizer.from_dict(payload["tokenizer"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path} has an invalid tokenizer: {e}") from None
    model = Transformer(config)
    try:
        model.load_state_dict(payload["model"])
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"{path}: weights do not match its config: {str(e).splitlines()[0]}") from None
    for name, t in payload["model"].items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ValueError(f"{path}: weight {name} holds NaN or inf (a tampered or diverged checkpoint)")
    return Checkpoint(model=model.to(device), tokenizer=tokenizer, state=payload.get("state", {}), path=path)


SHIPPED = ("r1zero-base", "r1zero-rl")  # made by `python -m minids r1zero --seed 0` + `python -m minids export`


def shipped_path(name: str) -> Path:
    """Where a checkpoint that ships inside the package lives."""
    if name not in SHIPPED:
        raise ValueError(f"unknown shipped checkpoint {name!r}; choose one of {SHIPPED}")
    return Path(__file__).parent / "data" / "checkpoints" / f"{name}.pt"


def load_pretrained(name: str = "r1zero-rl", device: str | torch.device = "cpu") -> Checkpoint:
    """Load a shipped checkpoint: "r1zero-base" (pretrained only) or "r1zero-rl" (after GRPO).

    They let every notebook and widget work at once, with no training first.
    """
    return load_checkpoint(shipped_path(name), device)


def export_checkpoint(src, dst, info: dict | None = None) -> Path:
    """Copy a training checkpoint without its optimiser state (a few MB instead of ~14), adding `info`."""
    ckpt = load_checkpoint(src)
    keep = {k: v for k, v in ckpt.state.items() if k in ("task", "train", "grpo", "history", "step")}
    return save_checkpoint(dst, ckpt.model, ckpt.tokenizer, {**keep, **(info or {})})
