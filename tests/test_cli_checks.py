"""The command line checks everything it can before the first step; errors are one line and a non-zero exit."""

import errno

import pytest
import torch

import minids.r1zero
import minids.train
from minids.__main__ import main


def fails(argv, capsys):
    """Run the CLI; it must exit non-zero with one line 'error: ...' on stderr. Returns that line."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code not in (0, None)
    err = capsys.readouterr().err.strip()
    if isinstance(e.value.code, str):  # sys.exit("message") prints it
        err = e.value.code
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture
def no_training(monkeypatch):
    """Any training started is a test failure: the checks must come first."""
    def boom(*a, **k):
        raise AssertionError("training started before the arguments were checked")
    monkeypatch.setattr(minids.train, "make_train_step", boom)
    monkeypatch.setattr(minids.r1zero, "pretrain", boom)


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "TrainConfig.steps must be an integer >= 1, got 0"),
    (["--lr", "nan"], "TrainConfig.lr must be a finite number > 0 and < 1, got nan"),
    (["--lr", "inf"], "TrainConfig.lr must be a finite number"),
    (["--lr=-1e-3"], "TrainConfig.lr must be"),
    (["--batch-size", "-2"], "TrainConfig.batch_size must be an integer >= 1"),
    (["--seed", "-1"], "TrainConfig.seed must be an integer >= 0"),
    (["--device", "tpu"], "TrainConfig.device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got 'tpu'"),
    (["--device", "cuda"], "no CUDA GPU is available"),
])
def test_pretrain_bad_arguments(args, message, capsys, no_training, tmp_path):
    assert message in fails(["pretrain", "--out", str(tmp_path / "m.pt"), *args], capsys)


def test_pretrain_unwritable_out(capsys, no_training, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert "a-file exists and is not a folder" in fails(["pretrain", "--out", str(blocker / "m.pt")], capsys)
    assert "cannot write to" in fails(["pretrain", "--out", str(blocker / "sub" / "m.pt")], capsys)
    assert "is a folder" in fails(["pretrain", "--out", str(tmp_path)], capsys)


@pytest.mark.parametrize("args, message", [
    (["--max-completion-length", "200"], "GRPOConfig.max_completion_length=200 plus the longest prompt"),
    (["--max-completion-length", "0"], "GRPOConfig.max_completion_length must be an integer >= 1, got 0"),
    (["--beta", "nan"], "GRPOConfig.beta must be a finite number >= 0, got nan"),
    (["--beta", "-1"], "GRPOConfig.beta must be"),
    (["--grpo-steps", "0"], "GRPOConfig.steps must be"),
    (["--pretrain-steps", "-5"], "TrainConfig.steps must be"),
    (["--seed", "-3"], "R1ZeroSettings.seed must be"),
])
def test_r1zero_bad_arguments_before_pretraining(args, message, capsys, no_training, tmp_path):
    assert message in fails(["r1zero", "--out", str(tmp_path / "run"), *args], capsys)


def test_r1zero_unwritable_out(capsys, no_training, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert "is not a folder" in fails(["r1zero", "--out", str(blocker)], capsys)
    assert "cannot write to" in fails(["r1zero", "--out", str(blocker / "run")], capsys)


def test_export_checks_its_inputs(capsys, tmp_path):
    assert "no base.pt in" in fails(["export", str(tmp_path), "--dest", str(tmp_path / "out")], capsys)


def test_generate_bad_options(capsys, tmp_path, tiny_model, tok):
    from minids.checkpoint import save_checkpoint
    path = save_checkpoint(tmp_path / "m.pt", tiny_model, tok)
    for args, message in ((["--temperature", "nan"], "temperature must be a finite number >= 0"),
                          (["--temperature", "1e-9"], "temperature must be 0 (greedy) or >= 0.01"),
                          (["--top-k", "0"], "top_k must be an integer >= 1"),
                          (["--max-new-tokens", "500"], "exceeds the model's context")):
        assert message in fails(["generate", "1+2", "--checkpoint", str(path), *args], capsys)
    corrupt = tmp_path / "bad.pt"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(raw))
    assert "error:" in fails(["generate", "1+2", "--checkpoint", str(corrupt)], capsys)


@pytest.fixture
def quick_pretrain(monkeypatch):
    """The CLI's pretraining without its final evaluation (128 generations), to keep the test fast."""
    monkeypatch.setattr(minids.train, "working_accuracy", lambda *a, **k: 0.0)
    monkeypatch.setattr(minids.train, "answer_accuracy", lambda *a, **k: 0.0)


def test_resume_with_another_balance_is_refused_not_relabelled(capsys, tmp_path, quick_pretrain):
    out = tmp_path / "m.pt"
    main(["pretrain", "--steps", "2", "--batch-size", "2", "--device", "cpu", "--out", str(out)])
    before = out.read_bytes()
    message = fails(["pretrain", "--steps", "2", "--batch-size", "2", "--device", "cpu", "--out", str(out),
                     "--balance", "none"], capsys)
    assert "model.balance: 'aux_free' in the checkpoint, 'none' now" in message and "--restart" in message
    assert out.read_bytes() == before
    main(["pretrain", "--steps", "2", "--batch-size", "2", "--device", "cpu", "--out", str(out), "--balance",
          "none", "--restart"])
    assert torch.load(out, weights_only=True)["model_config"]["balance"] == "none"


def test_full_disk_is_one_line_and_the_previous_checkpoint_survives(capsys, tmp_path, monkeypatch, quick_pretrain):
    out = tmp_path / "m.pt"
    argv = ["pretrain", "--steps", "2", "--batch-size", "2", "--device", "cpu", "--out", str(out)]
    main(argv)
    before = out.read_bytes()

    def no_space(obj, f, *a, **k):
        f.write(b"PK partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", no_space)
    message = fails(argv + ["--restart"], capsys)
    assert "no space left on the disk while saving" in message and "unchanged" in message
    monkeypatch.undo()
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]
