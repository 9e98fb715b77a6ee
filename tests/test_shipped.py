"""The checkpoints shipped inside the package load, and still score what was recorded when they were made."""

import pytest

from minids.checkpoint import SHIPPED, load_pretrained
from minids.evaluate import rollout_stats, working_accuracy
from minids.tasks import eval_problems


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_checkpoint_reproduces_recorded_accuracy(name):
    ckpt = load_pretrained(name)
    recorded = ckpt.state["eval"]
    problems = eval_problems(recorded["size"], seed=recorded["seed"])
    greedy = rollout_stats(ckpt.model, ckpt.tokenizer, problems, temperature=0)
    # greedy decoding is deterministic; allow a problem or two for another CPU's float rounding
    assert abs(greedy["accuracy"] - recorded["greedy_accuracy"]) <= 2 / recorded["size"]
    assert abs(working_accuracy(ckpt.model, ckpt.tokenizer, problems) - recorded["working_accuracy"]) <= 2 / recorded["size"]


def test_rl_checkpoint_beats_its_base():
    """The shipped pair shows the R1-Zero effect: RL made the model accurate by thinking longer."""
    base, rl = load_pretrained("r1zero-base").state["eval"], load_pretrained("r1zero-rl").state["eval"]
    assert rl["greedy_accuracy"] > base["greedy_accuracy"] + 0.2
    assert rl["think_length"] > 1.4 * base["think_length"]  # greedy: 15.3 -> 24.7 tokens when made


def test_unknown_shipped_name_is_a_clear_error():
    with pytest.raises(ValueError, match="r1zero-base"):
        load_pretrained("gpt-5")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_checkpoint_carries_a_verified_checksum(name):
    import torch
    from minids.checkpoint import VERSION, content_digest, shipped_path
    payload = torch.load(shipped_path(name), weights_only=True)
    assert payload["version"] == VERSION and payload["checksum"] == content_digest(payload)
