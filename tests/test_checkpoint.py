"""One-file checkpoints: lossless round trip, atomic writes, and refusing bad or malicious files."""

import os
import random

import pytest
import torch

from minids.checkpoint import FORMAT, VERSION, load_checkpoint, save_checkpoint
from minids.train import make_optimizer

TEXTS = ["<|bos|>Q:7+5-9=?<think>7+5=2</think>", "hello world", "你好，世界", ""]


@pytest.fixture
def saved(tmp_path, tiny_model, tok):
    """A checkpoint of the tiny model (with a non-zero aux-free bias) and a small training state."""
    tiny_model.moe_layers[0].gate.bias.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
    opt = make_optimizer(tiny_model, 1e-3, 0.1)
    idx = torch.randint(0, tok.vocab_size, (2, 8), generator=torch.Generator().manual_seed(0))
    tiny_model(idx, idx).loss.backward()
    opt.step()
    state = {"step": 7, "history": [{"step": 1, "loss": 6.2, "load": [[0.25] * 4]}],
             "optimizer": opt.state_dict()}
    path = save_checkpoint(tmp_path / "ckpt.pt", tiny_model, tok, state)
    return path, state


def payload_of(path):
    return torch.load(path, weights_only=True)


# ----------------------------------------------------------------------------- round trip

def test_round_trip(saved, tiny_model, tok):
    """Loading gives identical logits, tokenizer, buffers and training state."""
    path, state = saved
    ckpt = load_checkpoint(path)
    assert ckpt.path == path and ckpt.config == tiny_model.config
    idx = torch.randint(0, tok.vocab_size, (3, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(ckpt.model.eval()(idx).logits, tiny_model.eval()(idx).logits)
    assert torch.equal(ckpt.model.moe_layers[0].gate.bias, tiny_model.moe_layers[0].gate.bias)
    for text in TEXTS:
        assert ckpt.tokenizer.encode(text, allowed_special="all") == tok.encode(text, allowed_special="all")
    assert ckpt.tokenizer.vocab_size == tok.vocab_size
    assert ckpt.state["step"] == 7 and ckpt.state["history"] == state["history"]
    opt_a, opt_b = ckpt.state["optimizer"]["state"], state["optimizer"]["state"]
    assert opt_a.keys() == opt_b.keys() and len(opt_a) > 0
    for k in opt_a:
        for name in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(opt_a[k][name], opt_b[k][name])


def test_empty_state_and_nested_folder(tmp_path, tiny_model, tok):
    """save_checkpoint creates missing folders; state defaults to {}."""
    path = save_checkpoint(tmp_path / "a" / "b" / "m.pt", tiny_model, tok)
    assert load_checkpoint(path).state == {}


# ----------------------------------------------------------------------------- atomic writes

def test_no_temp_files_left(saved, tiny_model, tok):
    """A successful save (and an overwrite) leaves exactly the checkpoint in its folder."""
    path, _ = saved
    save_checkpoint(path, tiny_model, tok, {"step": 8})
    assert os.listdir(path.parent) == [path.name]
    assert load_checkpoint(path).state == {"step": 8}


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_write_keeps_previous_checkpoint(saved, tiny_model, tok, monkeypatch, error):
    """If torch.save dies half-way (error or Ctrl-C), the old checkpoint is intact and no temp file remains."""
    path, _ = saved
    before = path.read_bytes()

    def half_write(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 partial")
        raise error

    monkeypatch.setattr(torch, "save", half_write)
    with torch.no_grad():
        tiny_model.embed.weight.add_(1.0)  # the new save would differ
    with pytest.raises(type(error)):
        save_checkpoint(path, tiny_model, tok, {"step": 99})
    monkeypatch.undo()
    assert os.listdir(path.parent) == [path.name]
    assert path.read_bytes() == before
    assert load_checkpoint(path).state["step"] == 7


# ----------------------------------------------------------------------------- refusing bad files

CODE_RAN = []


def _mark_code_ran():
    CODE_RAN.append(True)


class RunsCodeOnLoad:
    """Unpickling this calls _mark_code_ran (if the loader lets it)."""

    def __reduce__(self):
        return (_mark_code_ran, ())


class RunsShellOnLoad:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_code_on_load_is_refused(saved, tmp_path):
    """A checkpoint whose unpickling would run code is refused, and the code does not run."""
    path, _ = saved
    payload = payload_of(path)
    marker = tmp_path / "pwned"
    for evil in (RunsCodeOnLoad(), RunsShellOnLoad(marker)):
        bad = tmp_path / "evil.pt"
        torch.save({**payload, "state": {"step": evil}}, bad)
        with pytest.raises(ValueError, match="refused to load.*run code"):
            load_checkpoint(bad)
    assert CODE_RAN == []
    assert not marker.exists()


def test_truncated_file(saved, tmp_path):
    path, _ = saved
    data = path.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_checkpoint(cut)


@pytest.mark.parametrize("content", [
    random.Random(0).randbytes(4096),  # binary garbage
    b"this is not a checkpoint\n" * 50,  # text
    b"",  # empty file
])
def test_garbage_file(tmp_path, content):
    """Arbitrary bytes give a ValueError saying the file is not a readable checkpoint."""
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(content)
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(bad)


@pytest.mark.parametrize("obj", [{"weights": torch.zeros(3)}, torch.zeros(3), [1, 2, 3],
                                 {"format": "something-else", "version": VERSION}])
def test_torch_file_that_is_not_a_minids_checkpoint(tmp_path, obj):
    bad = tmp_path / "other.pt"
    torch.save(obj, bad)
    with pytest.raises(ValueError, match="not a minids checkpoint"):
        load_checkpoint(bad)


def test_wrong_version(saved, tmp_path):
    path, _ = saved
    bad = tmp_path / "v2.pt"
    torch.save({**payload_of(path), "version": VERSION + 1}, bad)
    with pytest.raises(ValueError, match=f"version {VERSION + 1}.*reads version {VERSION}"):
        load_checkpoint(bad)


def test_nan_weights(saved, tmp_path):
    path, _ = saved
    payload = payload_of(path)
    payload["model"]["head.weight"][3, 5] = float("nan")
    bad = tmp_path / "nan.pt"
    torch.save(payload, bad)
    with pytest.raises(ValueError, match="head.weight holds NaN"):
        load_checkpoint(bad)


@pytest.mark.parametrize("change, message", [
    (lambda p: p.pop("tokenizer"), "missing"),
    (lambda p: p["model_config"].update(dim=31), "invalid model config"),
    (lambda p: p["model"].pop("embed.weight"), "weights do not match"),
    (lambda p: p.update(model="not weights"), "weights do not match"),
    (lambda p: p.update(tokenizer="not a tokenizer"), "invalid tokenizer"),
])
def test_inconsistent_contents(saved, tmp_path, change, message):
    """A minids-marked file with broken parts is a ValueError, not a crash deeper down."""
    path, _ = saved
    payload = payload_of(path)
    assert payload["format"] == FORMAT
    change(payload)
    bad = tmp_path / "bad.pt"
    torch.save(payload, bad)
    with pytest.raises(ValueError, match=message):
        load_checkpoint(bad)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path)  # a folder is not a checkpoint file
