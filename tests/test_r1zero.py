"""The R1-Zero pipeline's own logic: task flags on the command line, pretraining to the gate, pass@k."""

import json
from dataclasses import dataclass, fields

import pytest

import minids.__main__ as cli
import minids.r1zero as R
from minids.evaluate import is_gold_chain, pass_at_k, pass_at_k_curve
from minids.grpo import GRPOConfig
from minids.tasks import Problem, TaskConfig, sample_document
from minids.train import TrainConfig


def flag(name):
    return "--" + name.replace("_", "-")


# ----------------------------------------------------------------------------- task flags

@pytest.mark.parametrize("command", ["r1zero", "pretrain"])
def test_every_task_field_has_a_flag_listed_in_help(command, capsys):
    """Generated from the dataclass: a new TaskConfig field gets its flag with no CLI change."""
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args([command, "--help"])
    help_text = capsys.readouterr().out
    for f in fields(TaskConfig):
        assert flag(f.name) in help_text, f.name


def test_flags_build_the_task_and_keep_the_rest():
    args = cli.build_parser().parse_args(["r1zero", "--modulus", "7", "--max-operands", "10", "--ops", "+",
                                          "--complete-max-operands", "none", "--share-complete-long", "0.5"])
    task = cli.config_from_args(TaskConfig, args)
    assert task == TaskConfig(modulus=7, max_operands=10, ops="+", share_complete_long=0.5)
    args = cli.build_parser().parse_args(["pretrain", "--modulus", "none"])
    assert cli.config_from_args(TaskConfig, args).modulus is None


def test_flag_generation_follows_the_fields():
    """A dataclass with fields of each kind: one flag each, parsed to the field's type."""
    import argparse

    @dataclass
    class Toy:
        n: int = 1  # a count
        x: float = 0.5  # a share
        name: str = "a"  # a word
        on: bool = False  # a switch
        cap: int | None = None  # a limit

    p = argparse.ArgumentParser()
    cli.add_config_flags(p, Toy)
    args = p.parse_args(["--n", "3", "--x", "0.25", "--name", "b", "--on", "yes", "--cap", "4"])
    assert cli.config_from_args(Toy, args) == Toy(3, 0.25, "b", True, 4)
    assert cli.config_from_args(Toy, p.parse_args([])) == Toy()
    assert "a limit" in p.format_help()


@pytest.mark.parametrize("argv, words", [
    (["--share-complete", "0.5"], "is 1"),
    (["--max-operands", "1"], "max_operands"),
    (["--modulus", "1"], "modulus"),
    (["--modulus", "101"], "<= 100"),
    (["--share-complete-long", "2"], "share_complete_long"),
    (["--max-operands", "12"], "max-completion-length"),  # a complete chain would not fit in 64 tokens
])
def test_bad_task_is_a_one_line_error_before_any_work(argv, words, monkeypatch, capsys, tmp_path):
    def no_work(*a, **k):
        raise AssertionError("pretraining started")
    monkeypatch.setattr(R, "pretrain", no_work)
    with pytest.raises(SystemExit) as e:
        cli.main(["r1zero", "--device", "cpu", "--out", str(tmp_path / "run"), *argv])
    message = str(e.value.code)
    assert words in message and "\n" not in message and message.startswith("error:")


def test_task_flags_reach_the_run_and_its_summary(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(R, "run_r1zero", lambda out, settings, **k: seen.setdefault("s", settings) and {"interrupted": "x"})
    cli.main(["r1zero", "--variant", "filler", "--modulus", "7", "--out", str(tmp_path / "run")])
    assert seen["s"].task == TaskConfig(modulus=7, filler_max=3)  # the variant, then the flags


def test_pretrain_command_trains_on_the_flagged_task(monkeypatch, tmp_path, capsys):
    import minids.train as T
    seen = {}
    monkeypatch.setattr(T, "pretrain", lambda model, tok, task, train, **k: seen.setdefault("task", task) and
                        T.PretrainResult(model=model))
    cli.main(["pretrain", "--max-operands", "5", "--ops", "+", "--out", str(tmp_path / "p.pt"), "--device", "cpu"])
    assert seen["task"] == TaskConfig(max_operands=5, ops="+")
    assert "max_operands=5" in capsys.readouterr().out  # the task is printed with the run


# ----------------------------------------------------------------------------- length extrapolation

def test_complete_working_only_up_to_k_operands():
    import random
    task = TaskConfig(min_operands=3, max_operands=8, complete_max_operands=5, share_direct=0.0,
                      share_partial=0.0, share_complete=1.0, share_sloppy=0.0)
    rng = random.Random(0)
    for _ in range(300):
        prompt, completion = sample_document(rng, task)
        n = prompt.count("+") + prompt.count("-") + 1
        complete = completion.count("=") == n - 1
        assert complete == (n <= 5), (prompt, completion)
    with pytest.raises(ValueError, match="complete_max_operands"):
        TaskConfig(complete_max_operands=1)


# ----------------------------------------------------------------------------- pass@k

def test_pass_at_k_hand_values_and_unbiasedness():
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)
    assert pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 1, 4) == 1.0
    # the average over every k-subset of the samples, by brute force
    from itertools import combinations
    samples = [1, 0, 0, 1, 0, 0, 0]
    subsets = list(combinations(samples, 3))
    assert pass_at_k(7, 2, 3) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    curve = pass_at_k_curve([[True, False], [False, False]], [1, 2])
    assert curve == {1: pytest.approx(0.25), 2: pytest.approx(0.5)}


def test_gold_chain_is_exact():
    p = Problem((7, 5, 9), ("+", "-"))
    assert is_gold_chain(p, "<think>7+5=2,2-9=3</think><answer>3</answer><|eos|>")
    assert not is_gold_chain(p, "<think>7+5=2</think><answer>3</answer><|eos|>")
    assert not is_gold_chain(p, "<think>7+5=2,2-9=3,3+0=3</think><answer>3</answer><|eos|>")


# ----------------------------------------------------------------------------- pretraining to the gate

def tiny_settings(tiny_config, **kw):
    return R.R1ZeroSettings(
        seed=0, device="cpu", model=tiny_config, task=TaskConfig(min_operands=2, max_operands=3),
        pretrain=TrainConfig(steps=4, batch_size=4, warmup_steps=1, eval_every=2, eval_size=4, checkpoint_every=0),
        grpo=GRPOConfig(steps=1, prompts_per_step=2, num_generations=2, eval_every=0, max_completion_length=24),
        eval_size=4, eval_samples=1, **kw)


def test_failing_base_is_pretrained_in_chunks_up_to_the_budget_then_refused(tiny_config, monkeypatch, tmp_path):
    monkeypatch.setattr(R, "EXTEND_STEPS", 3)
    with pytest.raises(R.GateError, match="after 10 pretraining steps.*--max-pretrain-steps"):
        R.run_r1zero(tmp_path, tiny_settings(tiny_config, max_pretrain_steps=11), progress=False, log=lambda *a: None)
    steps = [json.loads(line)["step"] for line in (tmp_path / "pretrain_history.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 11))  # 4 + 3 + 3 steps, numbered on
    assert sorted(p.name for p in tmp_path.glob("base*.pt")) == ["base-more1.pt", "base-more2.pt", "base.pt"]


def test_forced_run_records_the_pretraining_it_used(tiny_config, monkeypatch, tmp_path):
    monkeypatch.setattr(R, "EXTEND_STEPS", 3)
    s = R.run_r1zero(tmp_path, tiny_settings(tiny_config, max_pretrain_steps=100, force=True), progress=False,
                     log=lambda *a: None)  # forced: no extra chunks, whatever the budget
    assert s["pretraining"]["steps_used"] == 4 and len(s["pretraining"]["stages"]) == 1
    assert s["gate_passed"] is False and 0 <= s["before"]["gold_chain"] <= 1
    assert json.loads((tmp_path / "summary.json").read_text())["settings"]["task"]["max_operands"] == 3
    folder = tmp_path.parent / "tiny_s7"
    tmp_path.rename(folder)
    row = R.gate_row(R.read_run(folder), default_steps=4)
    assert (row["variant"], row["seed"], row["steps_used"], row["gate_passed"]) == ("tiny", 7, 4, False)
    assert 0 <= row["working_at_default"] <= 1 and row["accuracy"][0] == s["before"]["sampled_accuracy"]


def test_onset_step_is_the_first_eval_at_the_gate():
    h = [{"step": 1}, {"step": 2, "eval/working_accuracy": 0.5}, {"step": 4, "eval/working_accuracy": 0.9},
         {"step": 6, "eval/working_accuracy": 1.0}]
    assert R.onset_step(h) == 4 and R.onset_step(h[:2]) is None


def test_shipped_sweeps_load_and_unknown_is_refused():
    robust = R.shipped_sweep("robust")
    assert len(robust) >= 21 and all("summary" in r and "pretrain_history" in r for r in robust.values())
    with pytest.raises(ValueError, match="robust"):
        R.shipped_sweep("nope")
