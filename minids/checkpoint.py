"""One-file checkpoints: model config + weights + tokenizer + training state.

Four promises:
  * Nothing is lost. A checkpoint is written to a temporary file in the same
    folder, flushed to disk, then renamed over the old one. A rename is atomic,
    so a run killed mid-save (or a full disk) leaves the previous checkpoint
    intact; the next save removes what a killed one left behind.
  * Loading never runs code. `torch.load(weights_only=True)` unpickles only
    tensors and plain containers (dict, list, str, numbers); a file crafted to
    execute something on load is refused with a clear error.
  * What was saved is what is loaded. A SHA-256 of the whole content (every
    tensor's bytes, the config, the tokenizer, the training state) is stored
    in the file and checked on load, so a flipped bit anywhere is caught; the
    zip container torch writes does not check its own CRCs.
  * Whatever `save_checkpoint` accepts, `load_checkpoint` accepts: both run the
    same checks (a valid config, finite weights of the shapes the config says,
    a tokenizer no larger than the embedding, plain data in the state), and
    the loader checks the sizes a stored config asks for against what the file
    holds *before* allocating a model.
"""

from __future__ import annotations

import errno
import hashlib
import os
import pickle
import re
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from .model import ModelConfig, Transformer
from .tokenizer import Tokenizer

FORMAT = "minids-checkpoint"
VERSION = 2  # 2 adds the content checksum; version 1 files (no checksum) still load
READS = (1, 2)
PLAIN = (str, int, float, bool, type(None))


@dataclass
class Checkpoint:
    model: Transformer
    tokenizer: Tokenizer
    state: dict  # training state: step, history, optimizer, configs, ... (may be empty)
    path: Path | None = None

    @property
    def config(self) -> ModelConfig:
        return self.model.config


def _feed(h, obj, where: str = "state") -> None:
    """Hash `obj` in a canonical form; ValueError for anything but tensors and plain data."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(obj.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif type(obj) in (dict, OrderedDict):
        h.update(f"D{len(obj)}".encode())
        for key in sorted(obj, key=lambda k: (type(k).__name__, k)):
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise ValueError(f"{where} has a key {key!r} of type {type(key).__name__}; keys must be str or int")
            _feed(h, key, where)
            _feed(h, obj[key], f"{where}[{key!r}]")
    elif type(obj) in (list, tuple, torch.Size):
        h.update(f"{'L' if isinstance(obj, list) else 'U'}{len(obj)}".encode())
        for i, x in enumerate(obj):
            _feed(h, x, f"{where}[{i}]")
    elif type(obj) in PLAIN:  # exactly: numpy's float64 is a float, but loading it would be refused
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    else:
        raise ValueError(f"{where} holds a {type(obj).__name__}; a checkpoint holds only tensors and plain data "
                         f"(dict, list, tuple, str, int, float, bool, None)")


def content_digest(payload: dict) -> str:
    """SHA-256 of everything in a payload but its own checksum."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in payload.items() if k != "checksum"}, "checkpoint")
    return "sha256:" + h.hexdigest()


def check_contents(config: ModelConfig, tokenizer: Tokenizer, weights, where: str) -> None:
    """The checks save and load share: the tokenizer fits the embedding, the weights have the shapes the
    config says (found on the "meta" device, so nothing is allocated) and are finite."""
    if tokenizer.vocab_size > config.vocab_size:
        raise ValueError(f"{where}: the tokenizer has {tokenizer.vocab_size} tokens but the model's embedding "
                         f"only {config.vocab_size} (ModelConfig.vocab_size); they must agree")
    if not isinstance(weights, dict) or not all(isinstance(t, torch.Tensor) for t in weights.values()):
        raise ValueError(f"{where}: weights do not match its config: not a dict of tensors")
    with torch.device("meta"):
        skeleton = Transformer(config)
    expected = skeleton.state_dict()
    missing, unexpected = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{where}: weights do not match its config: "
                         + (f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"))
    for name, t in expected.items():
        if weights[name].shape != t.shape:
            raise ValueError(f"{where}: weights do not match its config: {name} is {tuple(weights[name].shape)}, "
                             f"the config says {tuple(t.shape)}")
    stored = sum(t.numel() for t in weights.values())
    wanted = sum(t.numel() for t in (*skeleton.parameters(), *skeleton.buffers()))
    if wanted > 2 * stored + 2**22:  # buffers not in the file (RoPE tables) sized by a crafted config
        raise ValueError(f"{where}: its config asks for {wanted:,} numbers but the file holds {stored:,}; "
                         f"refusing to allocate (max_seq_len={config.max_seq_len})")
    for name, t in weights.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ValueError(f"{where}: weight {name} holds NaN or inf (a tampered or diverged checkpoint)")


TEMP = re.compile(r"\.(\d+)\.[^.]+\.tmp$")  # <name>.<pid>.<random>.tmp


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(path: Path) -> list[Path]:
    """Delete temporary files that killed saves of `path` left behind (their process is gone)."""
    removed = []
    for p in path.parent.glob(glob_escape(path.name) + ".*.tmp"):
        m = TEMP.search(p.name[len(path.name):])
        if m is None or not _alive(int(m.group(1))):  # no pid: written by an older minids
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def save_checkpoint(path, model: Transformer, tokenizer: Tokenizer, state: dict | None = None) -> Path:
    """Atomically write model, tokenizer and training state to `path`, with a content checksum.

    Refuses (ValueError) what load_checkpoint would refuse. A full disk is an
    OSError saying so; the previous checkpoint is left as it was.
    """
    path = Path(path)
    try:
        config = ModelConfig.from_dict(model.config.to_dict())  # a config edited after it was made
    except (TypeError, ValueError) as e:
        raise ValueError(f"not saving {path}: the model's config is invalid: {e}") from None
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    check_contents(config, tokenizer, weights, f"not saving {path}")
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": config.to_dict(),
        "model": weights,
        "tokenizer": tokenizer.to_dict(),
        "state": state or {},
    }
    if not isinstance(payload["state"], dict):
        raise ValueError(f"not saving {path}: state must be a dict, got {type(state).__name__}")
    payload["checksum"] = content_digest(payload)  # also refuses state that is not plain data
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it the usual permissions
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(e.errno, f"no space left on the disk while saving {path}; "
                                   f"the previous checkpoint there is unchanged. Free some space and run again") from None
        raise
    return path


def _read(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
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
    except MemoryError:
        raise ValueError(f"{path} is not a readable checkpoint (corrupt file: it asks for more memory than "
                         f"there is)") from None
    except Exception as e:  # RuntimeError, EOFError, BadZipFile, OSError, and KeyError etc. from garbage
        raise ValueError(f"{path} is not a readable checkpoint (truncated or corrupt file): "
                         f"{type(e).__name__}" + (f": {str(e).splitlines()[0]}" if str(e) else "")) from None


def load_checkpoint(path, device: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint safely; any problem becomes a ValueError that says what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    payload = _read(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a minids checkpoint (no '{FORMAT}' marker)")
    version = payload.get("version")
    if version not in READS or isinstance(version, bool):
        raise ValueError(f"{path} has checkpoint version {version!r}; this minids reads version {VERSION}")
    missing = {"model_config", "model", "tokenizer"} - set(payload)
    if missing:
        raise ValueError(f"{path} is missing {sorted(missing)}")
    if "checksum" in payload or version >= 2:
        try:
            digest = content_digest(payload)
        except ValueError as e:
            raise ValueError(f"{path} is corrupt: {e}") from None
        if payload.get("checksum") != digest:
            raise ValueError(f"{path} is corrupt: its content does not match the checksum written when it was "
                             f"saved (a damaged or edited file)")
    try:
        config = ModelConfig.from_dict(payload["model_config"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path} has an invalid model config: {e}") from None
    try:
        tokenizer = Tokenizer.from_dict(payload["tokenizer"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path} has an invalid tokenizer: {e}") from None
    state = payload.get("state", {})
    if not isinstance(state, dict):
        raise ValueError(f"{path}: its training state is a {type(state).__name__}, not a dict")
    check_contents(config, tokenizer, payload["model"], str(path))  # before any allocation
    model = Transformer(config)
    try:
        model.load_state_dict(payload["model"])
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"{path}: weights do not match its config: {str(e).splitlines()[0]}") from None
    return Checkpoint(model=model.to(device), tokenizer=tokenizer, state=state, path=path)


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
