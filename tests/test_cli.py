"""The command line's `lab` and `generate` subcommands, and the CPU thread choice."""

import pytest

from minids.__main__ import lab_options, main, task_prompt
from minids.device import cpu_threads


def test_lab_passes_allow_root_only_as_root(capsys):
    assert lab_options(["--port", "8899"], root=True) == ["--port", "8899", "--allow-root"]
    assert "passing --allow-root" in capsys.readouterr().err
    assert lab_options(["--allow-root"], root=True) == ["--allow-root"]  # never twice
    assert lab_options(["--no-browser"], root=False) == ["--no-browser"]
    lab_options(["--ip=0.0.0.0"], root=False)
    assert "token" in capsys.readouterr().err  # how to open it from another machine


def test_task_prompt_accepts_the_task_and_refuses_the_rest():
    assert task_prompt("7+5-9+3") == "<|bos|>Q:7+5-9+3=?"
    assert task_prompt(" Q:7 + 5 - 9 + 3=? ") == "<|bos|>Q:7+5-9+3=?"
    assert task_prompt("<|bos|>Q:1+2+3=?<think>") == "<|bos|>Q:1+2+3=?<think>"  # a full prompt, as given
    for bad in ("hello world", "", "   ", "12+30", "7*5+1", "7+"):
        with pytest.raises(ValueError, match="question"):
            task_prompt(bad)


@pytest.mark.parametrize("bad", ["hello world", "", "12+30-4"])
def test_generate_refuses_a_prompt_outside_the_task_with_one_line(bad, capsys):
    with pytest.raises(SystemExit) as e:
        main(["generate", bad])
    message = str(e.value.code)
    assert message.startswith("error: ") and "\n" not in message and "question" in message
    assert capsys.readouterr().out == ""  # no answer printed


def test_generate_takes_a_shipped_models_name(capsys):
    main(["generate", "7+5-9+3", "--checkpoint", "r1zero-rl", "--samples", "1", "--temperature", "0",
          "--max-new-tokens", "40"])
    line = capsys.readouterr().out.strip()
    assert line.startswith("<|bos|>Q:7+5-9+3=?<think>7+5=2") and "<answer>6</answer>" in line
    with pytest.raises(SystemExit, match="r1zero-base"):  # an unknown name lists the shipped ones
        main(["generate", "7+5", "--checkpoint", "r1zero-large"])


def test_cpu_threads_leaves_half_the_cores(monkeypatch):
    monkeypatch.delenv("MINIDS_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert [cpu_threads(n) for n in (1, 2, 4, 8, 64)] == [1, 1, 2, 4, 4]
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpu_threads(2) == 3  # an explicit choice wins
    monkeypatch.setenv("MINIDS_THREADS", "2")
    assert cpu_threads(64) == 2
    monkeypatch.setenv("MINIDS_THREADS", "lots")
    with pytest.raises(ValueError, match="MINIDS_THREADS"):
        cpu_threads()
