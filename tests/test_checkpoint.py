"""One-file checkpoints: lossless round trip, atomic writes, and refusing bad or malicious files."""

import os
import random

import pytest
import torch

from minids.checkpoint import FORMAT, VERSION, content_digest, load_checkpoint, save_checkpoint
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


def forge(payload, path):
    """Write an edited payload with a checksum that matches it: a crafted file, so the checks behind
    the checksum are what must catch it."""
    torch.save({**payload, "checksum": content_digest(payload)}, path)


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
    forge({**payload_of(path), "version": VERSION + 1}, bad)
    with pytest.raises(ValueError, match=f"version {VERSION + 1}.*reads version {VERSION}"):
        load_checkpoint(bad)


def test_nan_weights(saved, tmp_path):
    path, _ = saved
    payload = payload_of(path)
    payload["model"]["head.weight"][3, 5] = float("nan")
    bad = tmp_path / "nan.pt"
    forge(payload, bad)
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
    forge(payload, bad)
    with pytest.raises(ValueError, match=message):
        load_checkpoint(bad)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path)  # a folder is not a checkpoint file


# ----------------------------------------------------------------------------- proven intact

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

FAULTS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def same_contents(a, b):
    """Two checkpoints hold the same tensors, tokenizer and state."""
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return (a.config == b.config and sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
            and a.tokenizer.to_dict() == b.tokenizer.to_dict()
            and content_digest({"s": a.state}) == content_digest({"s": b.state}))


@FAULTS
@given(data=st.data())
def test_any_flipped_bit_is_caught_or_harmless(saved, tmp_path, data):
    """Flip one random bit anywhere in the file: the loader refuses it with a ValueError, or (a bit in
    the zip's bookkeeping that nothing reads) loads exactly the original contents. Never a silent change."""
    path, _ = saved
    raw = bytearray(path.read_bytes())
    i = data.draw(st.integers(0, len(raw) - 1), label="byte")
    raw[i] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    bad = tmp_path / "flipped.pt"
    bad.write_bytes(bytes(raw))
    try:
        ckpt = load_checkpoint(bad)
    except ValueError:
        return
    assert same_contents(ckpt, load_checkpoint(path)), f"byte {i} changed the contents silently"


def tensor_bytes(path):
    """Offsets of the bytes of the first stored tensor record (data/0) inside the zip file."""
    import zipfile
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith("/data/0"))
        with open(path, "rb") as f:
            f.seek(info.header_offset + 26)
            n, m = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
        start = info.header_offset + 30 + n + m
        return start, start + info.file_size


@FAULTS
@given(data=st.data())
def test_a_flipped_bit_inside_a_tensor_is_caught_by_the_checksum(saved, tmp_path, data):
    path, _ = saved
    start, end = tensor_bytes(path)
    raw = bytearray(path.read_bytes())
    raw[data.draw(st.integers(start, end - 1))] ^= 1 << data.draw(st.integers(0, 7))
    bad = tmp_path / "flipped.pt"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="does not match the checksum|holds NaN|not a readable"):
        load_checkpoint(bad)


@FAULTS
@given(data=st.data())
def test_every_truncation_is_refused(saved, tmp_path, data):
    path, _ = saved
    raw = path.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(raw[:data.draw(st.integers(0, len(raw) - 1), label="keep")])
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(cut)


def test_a_crafted_config_is_refused_before_allocating(saved, tmp_path):
    """A config asking for an enormous context (RoPE tables of 10^10 numbers) is refused from the sizes alone."""
    path, _ = saved
    payload = payload_of(path)
    payload["model_config"]["max_seq_len"] = 10**9
    bad = tmp_path / "huge.pt"
    forge(payload, bad)
    with pytest.raises(ValueError, match="asks for .* numbers but the file holds"):
        load_checkpoint(bad)
    payload = payload_of(path)
    payload["model_config"]["dim"] = 4096  # the weights stay small: their shapes disagree
    forge(payload, bad)
    with pytest.raises(ValueError, match="weights do not match its config: embed.weight is"):
        load_checkpoint(bad)


def test_tokenizer_larger_than_the_embedding_is_refused(tmp_path, tiny_config, tok):
    from dataclasses import replace
    from minids.model import Transformer
    small = Transformer(replace(tiny_config, vocab_size=tok.vocab_size - 1))
    with pytest.raises(ValueError, match="tokenizer has 512 tokens but the model's embedding only 511"):
        save_checkpoint(tmp_path / "m.pt", small, tok)
    assert not (tmp_path / "m.pt").exists()
    payload = payload_of(save_checkpoint(tmp_path / "ok.pt", Transformer(tiny_config), tok))
    payload["model_config"]["vocab_size"] = tok.vocab_size - 1
    payload["model"]["embed.weight"] = payload["model"]["embed.weight"][:-1]
    payload["model"]["head.weight"] = payload["model"]["head.weight"][:-1]
    forge(payload, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="must agree"):
        load_checkpoint(tmp_path / "bad.pt")


@pytest.mark.parametrize("spoil, message", [
    (lambda m, s: m.config.__setattr__("dim", 33), "config is invalid"),
    (lambda m, s: m.head.weight.data.__setitem__((0, 0), float("inf")), "holds NaN or inf"),
    (lambda m, s: s.update(when=__import__("datetime").date.today()), "holds a date"),
    (lambda m, s: s.update(x=__import__("numpy").float64(1.0)), "holds a float64"),
    (lambda m, s: s.update(x={(1, 2): 3}), "key .* of type tuple"),
])
def test_save_refuses_what_load_would_refuse(tmp_path, tiny_model, tok, spoil, message):
    """Whatever save accepts, load accepts: so save refuses, at save time, what load would refuse."""
    import copy
    state = {"step": 1}
    tiny_model.config = copy.copy(tiny_model.config)  # the fixture's config is shared: spoil a copy
    spoil(tiny_model, state)
    with pytest.raises(ValueError, match=message):
        save_checkpoint(tmp_path / "m.pt", tiny_model, tok, state)
    assert list(tmp_path.iterdir()) == []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(state=st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                          lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3)
                          | st.tuples(c, c), max_leaves=10))
def test_whatever_save_accepts_load_accepts(tmp_path, tiny_model, tok, state):
    path = save_checkpoint(tmp_path / "m.pt", tiny_model, tok, {"x": state})
    loaded = load_checkpoint(path).state
    assert content_digest({"s": loaded}) == content_digest({"s": {"x": state}})


def test_leftovers_of_killed_saves_are_cleaned_up(saved, tiny_model, tok):
    """A save killed with -9 leaves its temp file; the next save of that checkpoint removes it
    (and leaves a live process's temp file, and other files, alone)."""
    import subprocess
    import sys
    path, _ = saved
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    leftovers = [path.parent / f"{path.name}.{pid}.abc123.tmp", path.parent / f"{path.name}.old_style.tmp"]
    for p in leftovers:
        p.write_bytes(b"PK half a checkpoint")
    alive = path.parent / f"{path.name}.{os.getppid()}.zzz.tmp"
    alive.write_bytes(b"being written")
    other = path.parent / "notes.tmp"
    other.write_text("mine")
    save_checkpoint(path, tiny_model, tok, {"step": 8})
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, alive.name, other.name])


def test_a_full_disk_is_a_clear_error_and_the_old_checkpoint_survives(saved, tiny_model, tok, monkeypatch):
    import errno
    path, _ = saved
    before = path.read_bytes()

    def no_space(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", no_space)
    with pytest.raises(OSError, match="no space left on the disk while saving .*previous checkpoint there is "
                                      "unchanged") as e:
        save_checkpoint(path, tiny_model, tok, {"step": 99})
    assert e.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert os.listdir(path.parent) == [path.name] and path.read_bytes() == before


def test_version_1_files_without_checksum_still_load(saved, tmp_path):
    path, _ = saved
    payload = payload_of(path)
    del payload["checksum"]
    torch.save({**payload, "version": 1}, tmp_path / "v1.pt")
    assert load_checkpoint(tmp_path / "v1.pt").state["step"] == 7
    torch.save(payload, tmp_path / "v2.pt")  # version 2 must carry its checksum
    with pytest.raises(ValueError, match="does not match the checksum"):
        load_checkpoint(tmp_path / "v2.pt")
