"""Resume verifies what it resumes: a checkpoint of another run (any config field changed, another
tokenizer) is refused in one line before any step, and the file is left as it was."""

import copy
import dataclasses
from dataclasses import replace

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from minids.grpo import GRPOConfig, grpo_train
from minids.loop import ResumeMismatch
from minids.model import Transformer
from minids.rewards import RewardConfig
from minids.tasks import TaskConfig
from minids.tokenizer import Tokenizer
from minids.train import TrainConfig, pretrain
from minids.validation import spec_of

from test_validation import good_values

TRAIN = dict(steps=2, batch_size=2, warmup_steps=1, lr=1e-2, min_lr=1e-3, eval_every=0, checkpoint_every=0,
             device="cpu")
RL = dict(steps=1, prompts_per_step=2, num_generations=2, max_completion_length=8, eval_every=0, device="cpu",
          checkpoint_every=0)
TASK = TaskConfig(min_operands=2, max_operands=3)


def other_values(cls, name, base):
    """Valid values of field `name` other than base's, a few candidates to try in turn."""
    spec, value = spec_of(cls, name), getattr(base, name)
    if spec.optional and value is not None:
        yield None
    if spec.kind == "bool":
        yield not value
    elif spec.kind == "choice":
        yield from (c for c in spec.choices if c != value)
    elif spec.kind == "text":
        yield from (v for v in ("+", "*", "+-*", "cpu", "auto", "cuda") if v != value)
    elif spec.kind == "int":
        v = 3 if value is None else value
        yield from (v + 1, v * 2, v - 1, v + 2)
    elif spec.kind == "float":
        v = 0.5 if value is None else value
        yield from (v / 2, v * 2 if v else 0.5, 0.25, 0.5 if v != 0.5 else 0.3)
    elif spec.kind == "nested" and spec.cls is RewardConfig:
        yield RewardConfig(correct=2.0)


def changed(cls, name, base):
    for v in other_values(cls, name, base):
        if v == getattr(base, name) and type(v) is type(getattr(base, name)):
            continue
        try:
            return replace(base, **{name: v})
        except ValueError:
            pass
        mix = ("share_direct", "share_partial", "share_complete")  # these three sum to 1: move v to another
        if name in mix and 0 <= v <= 1:
            other = next(m for m in mix if m != name)
            try:
                return replace(base, **{name: v, other: getattr(base, other) + getattr(base, name) - v})
            except ValueError:
                pass
    raise AssertionError(f"no other valid value found for {cls.__name__}.{name}")


def fields_of(cls):
    return [f.name for f in dataclasses.fields(cls)]


@pytest.fixture(scope="module")
def pretrained_run(tok, tiny_config, tmp_path_factory):
    path = tmp_path_factory.mktemp("resume") / "base.pt"
    torch.manual_seed(0)
    pretrain(Transformer(tiny_config), tok, TASK, TrainConfig(**TRAIN), checkpoint=path, progress=False)
    return path


def refuses(run, path, what):
    """run() must raise a one-line ResumeMismatch naming `what`, take no step and leave the file as it was."""
    before = path.read_bytes()
    with pytest.raises(ResumeMismatch) as e:
        run()
    message = str(e.value)
    assert "\n" not in message and (f"{what}:" in message or f"{what}." in message) and "--restart" in message, message
    assert path.read_bytes() == before
    return message


@pytest.mark.parametrize("name", fields_of(TrainConfig))
def test_pretrain_refuses_any_changed_train_field(pretrained_run, tok, tiny_config, name):
    config = changed(TrainConfig, name, TrainConfig(**TRAIN))
    refuses(lambda: pretrain(Transformer(tiny_config), tok, TASK, config, checkpoint=pretrained_run,
                             callback=pytest.fail, progress=False), pretrained_run, f"train.{name}")


@pytest.mark.parametrize("name", fields_of(TaskConfig))
def test_pretrain_refuses_any_changed_task_field(pretrained_run, tok, tiny_config, name):
    task = changed(TaskConfig, name, TASK)
    refuses(lambda: pretrain(Transformer(tiny_config), tok, task, TrainConfig(**TRAIN), checkpoint=pretrained_run,
                             callback=pytest.fail, progress=False), pretrained_run, f"task.{name}")




def model_fields():
    from minids.config import ModelConfig
    return [f.name for f in dataclasses.fields(ModelConfig)]


@pytest.mark.parametrize("name", model_fields())
def test_pretrain_refuses_any_changed_model_field(pretrained_run, tok, tiny_config, name):
    """Another shape, another balance mode, another epsilon: refused, never a relabel nor a torch traceback."""
    from minids.config import ModelConfig
    config = changed(ModelConfig, name, tiny_config)
    if config.vocab_size < tok.vocab_size:
        config = replace(config, vocab_size=tok.vocab_size + 1)
    refuses(lambda: pretrain(Transformer(config), tok, TASK, TrainConfig(**TRAIN), checkpoint=pretrained_run,
                             callback=pytest.fail, progress=False), pretrained_run, f"model.{name}")


def test_pretrain_refuses_another_tokenizer(pretrained_run, tok, tiny_config):
    d = tok.to_dict()
    specials = {k: v - 1 for k, v in d["special_tokens"].items()}
    other = Tokenizer.from_dict({**d, "merges": d["merges"][:-1], "special_tokens": specials})
    message = refuses(lambda: pretrain(Transformer(tiny_config), other, TASK, TrainConfig(**TRAIN),
                                       checkpoint=pretrained_run, callback=pytest.fail, progress=False),
                      pretrained_run, "tokenizer")
    assert "512 tokens in the checkpoint, 511 now" in message


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_random_change_of_train_or_task_is_refused(pretrained_run, tok, tiny_config, data):
    cls = data.draw(st.sampled_from([TrainConfig, TaskConfig]))
    base = TrainConfig(**TRAIN) if cls is TrainConfig else TASK
    name = data.draw(st.sampled_from(fields_of(cls)))
    value = data.draw(good_values(spec_of(cls, name)))
    if name == "device":  # no GPU here: another device would be refused as unavailable first
        value = "auto"
    try:
        new = replace(base, **{name: value})
    except ValueError:
        return
    if dataclasses.asdict(new) == dataclasses.asdict(base):
        return
    train, task = (new, TASK) if cls is TrainConfig else (TrainConfig(**TRAIN), new)
    refuses(lambda: pretrain(Transformer(tiny_config), tok, task, train, checkpoint=pretrained_run,
                             callback=pytest.fail, progress=False), pretrained_run,
            f"{'train' if cls is TrainConfig else 'task'}.{name}")


@pytest.fixture(scope="module")
def rl_run(tok, tiny_config, tmp_path_factory):
    path = tmp_path_factory.mktemp("resume_rl") / "rl.pt"
    torch.manual_seed(0)
    grpo_train(Transformer(tiny_config), tok, TASK, GRPOConfig(**RL), checkpoint=path, progress=False)
    return path


@pytest.mark.parametrize("name", fields_of(GRPOConfig) + [f"reward.{n}" for n in fields_of(RewardConfig)])
def test_grpo_refuses_any_changed_field(rl_run, tok, tiny_config, name):
    base = GRPOConfig(**RL)
    if name.startswith("reward."):
        config = replace(base, reward=changed(RewardConfig, name.split(".")[1], base.reward))
    else:
        config = changed(GRPOConfig, name, base)
    refuses(lambda: grpo_train(Transformer(tiny_config), tok, TASK, config, checkpoint=rl_run,
                               callback=pytest.fail, progress=False), rl_run, f"grpo.{name}")


def test_grpo_refuses_a_pretraining_checkpoint(pretrained_run, tok, tiny_config):
    """A pretraining checkpoint is not a GRPO run: the message says which settings it lacks."""
    refuses(lambda: grpo_train(Transformer(tiny_config), tok, TASK, GRPOConfig(**RL), checkpoint=pretrained_run,
                               callback=pytest.fail, progress=False), pretrained_run, "grpo.steps")


def test_an_unchanged_request_resumes(pretrained_run, tok, tiny_config, tmp_path):
    path = tmp_path / "copy.pt"
    path.write_bytes(pretrained_run.read_bytes())
    more = replace(TrainConfig(**TRAIN))
    result = pretrain(Transformer(tiny_config), tok, TASK, more, checkpoint=path, progress=False)
    assert [h["step"] for h in result.history] == [1, 2]  # already finished: nothing re-run
    assert copy.deepcopy(result.history) == torch.load(path, weights_only=True)["state"]["history"]
