"""Every config field declares what it accepts, and every bad value is refused with the same clear message.

The tests are generated from the dataclass fields: a field without a spec
fails them, and hypothesis throws bad values (strings for numbers, 1 or "no"
for booleans, NaN, infinities, out-of-range numbers, None, other objects) at
every field in turn.
"""

import dataclasses
import importlib
import math
import pkgutil
import re

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minids
from minids.config import ModelConfig
from minids.generate import OPTIONS, check_options
from minids.grpo import GRPOConfig
from minids.r1zero import R1ZeroSettings
from minids.rewards import RewardConfig
from minids.tasks import TaskConfig
from minids.train import TrainConfig
from minids.validation import Spec, check_value, spec_of, specs

CONFIGS = (ModelConfig, TrainConfig, GRPOConfig, TaskConfig, RewardConfig, R1ZeroSettings)
FIELDS = [(cls, f.name) for cls in CONFIGS for f in dataclasses.fields(cls)]
EXAMPLES = 25  # hypothesis examples per field and property
CHECKS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def ids(case):
    cls, name = case
    return f"{cls.__name__}.{name}"


# ----------------------------------------------------------------------------- strategies from the specs

def bad_values(spec: Spec):
    """Values the spec must refuse."""
    junk = st.sampled_from([[], {}, (1,), object(), b"1"])
    options = [junk]
    if not spec.optional:
        options.append(st.none())
    if spec.kind in ("int", "float"):
        options += [st.text(max_size=4), st.booleans(), st.sampled_from([math.nan, math.inf, -math.inf])]
        if spec.kind == "int":
            options.append(st.floats())  # 2.0 is not an int either
            if spec.ge is not None:
                options.append(st.integers(max_value=math.ceil(spec.ge) - 1))
            if spec.gt is not None:
                options.append(st.integers(max_value=math.floor(spec.gt)))
            if spec.le is not None:
                options.append(st.integers(min_value=math.floor(spec.le) + 1))
            if spec.lt is not None:
                options.append(st.integers(min_value=math.ceil(spec.lt)))
        else:
            if spec.ge is not None:
                options.append(st.floats(max_value=spec.ge, exclude_max=True, allow_nan=False))
            if spec.gt is not None:
                options.append(st.floats(max_value=spec.gt, allow_nan=False))
            if spec.le is not None:
                options.append(st.floats(min_value=spec.le, exclude_min=True, allow_nan=False))
            if spec.lt is not None:
                options.append(st.floats(min_value=spec.lt, allow_nan=False))
    elif spec.kind == "bool":
        options += [st.integers(), st.sampled_from(["no", "yes", "False", "true", "0", ""]), st.floats()]
    elif spec.kind == "choice":
        options += [st.text(max_size=8).filter(lambda s: s not in spec.choices), st.integers(), st.booleans()]
    elif spec.kind == "text":
        options += [st.text(max_size=8).filter(lambda s: re.fullmatch(spec.pattern, s) is None), st.integers(),
                    st.booleans()]
    elif spec.kind == "nested":
        others = [c() for c in CONFIGS if c is not spec.cls and c is not R1ZeroSettings]
        options += [st.text(max_size=4), st.integers(), st.sampled_from(others), st.dictionaries(st.text(), st.integers())]
    return st.one_of(options)


def good_values(spec: Spec):
    """Values the spec accepts on its own (a cross-field rule may still refuse them)."""
    if spec.kind == "int":
        lo = spec.ge if spec.ge is not None else (spec.gt + 1 if spec.gt is not None else -1000)
        hi = spec.le if spec.le is not None else (spec.lt - 1 if spec.lt is not None else int(lo) + 1000)
        s = st.integers(min_value=int(lo), max_value=int(min(hi, lo + 1000)))
    elif spec.kind == "float":
        lo = spec.ge if spec.ge is not None else spec.gt
        hi = spec.le if spec.le is not None else spec.lt
        s = st.floats(min_value=lo, max_value=hi if hi is not None else 1e6, exclude_min=spec.gt is not None,
                      exclude_max=spec.lt is not None, allow_nan=False, allow_infinity=False)
    elif spec.kind == "bool":
        s = st.booleans()
    elif spec.kind == "choice":
        s = st.sampled_from(spec.choices)
    elif spec.kind == "text":
        s = st.from_regex(spec.pattern, fullmatch=True)
    else:
        s = st.just(spec.cls())
    return st.one_of(s, st.none()) if spec.optional else s


# ----------------------------------------------------------------------------- every field is declared

@pytest.mark.parametrize("case", FIELDS, ids=ids)
def test_every_field_has_a_spec(case):
    cls, name = case
    spec = spec_of(cls, name)
    assert spec.accepted()
    check_value(getattr(cls(), name), spec, name, cls.__name__)  # the default passes its own spec


def test_every_config_dataclass_in_minids_is_covered():
    """A new *Config / *Settings dataclass anywhere in minids must be added to CONFIGS (and so be checked)."""
    found = set()
    for info in pkgutil.iter_modules(minids.__path__):
        module = importlib.import_module(f"minids.{info.name}")
        for obj in vars(module).values():
            if (isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == module.__name__
                    and obj.__name__.endswith(("Config", "Settings"))):
                found.add(obj)
    assert found <= set(CONFIGS), sorted(c.__name__ for c in found - set(CONFIGS))


def test_a_field_without_a_spec_is_refused():
    from typing import ClassVar  # noqa: F401
    from minids.validation import integer, validate

    @dataclasses.dataclass
    class Careless:
        checked: int = integer(1, ge=0)
        unchecked: float = 0.5

        def __post_init__(self):
            validate(self)

    with pytest.raises(TypeError, match="Careless.unchecked has no validation spec"):
        Careless()
    with pytest.raises(TypeError):
        specs(Careless)


# ----------------------------------------------------------------------------- bad values, every field

@pytest.mark.parametrize("case", FIELDS, ids=ids)
@CHECKS
@given(data=st.data())
def test_bad_value_is_refused_naming_class_field_value(case, data):
    cls, name = case
    value = data.draw(bad_values(spec_of(cls, name)), label=name)
    with pytest.raises(ValueError) as e:
        cls(**{name: value})
    message = str(e.value)
    assert message.startswith(f"{cls.__name__}.{name} must be "), message
    assert message.endswith(f", got {value!r}") or message.endswith(f", got {float(value)!r}"), message
    assert "\n" not in message


@pytest.mark.parametrize("case", FIELDS, ids=ids)
@CHECKS
@given(data=st.data())
def test_good_value_is_kept_or_refused_by_a_named_rule(case, data):
    """A value its spec accepts is stored (ints in float fields as floats), unless a cross-field rule
    refuses it, again with a ValueError naming the class and a field. Never another exception."""
    cls, name = case
    value = data.draw(good_values(spec_of(cls, name)), label=name)
    try:
        config = cls(**{name: value})
    except ValueError as e:
        assert re.match(rf"{cls.__name__}\.\w+ must be .*, got ", str(e)), str(e)
        assert any(r.name for r in getattr(cls, "RULES", ())), "refused with no rule to refuse it"
        return
    assert getattr(config, name) == value
    if spec_of(cls, name).kind == "float" and value is not None:
        assert type(getattr(config, name)) is float


@CHECKS
@given(data=st.data())
def test_model_config_round_trips_through_dict(data):
    changes = {}
    for name, spec in specs(ModelConfig).items():
        if data.draw(st.booleans()):
            changes[name] = data.draw(good_values(spec))
    try:
        config = ModelConfig(**changes)
    except ValueError:
        return
    again = ModelConfig.from_dict(config.to_dict())
    assert again == config and again.to_dict() == config.to_dict()


# ----------------------------------------------------------------------------- cross-field rules

@pytest.mark.parametrize("make, message", [
    (lambda: ModelConfig(dim=130, n_heads=4), "ModelConfig.dim must be divisible by n_heads (4), got 130"),
    (lambda: ModelConfig(dim=12, n_heads=4), "ModelConfig.dim must be such that dim // n_heads is even"),
    (lambda: ModelConfig(n_layers=2, n_dense_layers=3), "ModelConfig.n_dense_layers must be at most n_layers (2)"),
    (lambda: ModelConfig(n_routed_experts=2, n_activated_experts=3), "ModelConfig.n_activated_experts must be at most"),
    (lambda: TrainConfig(lr=1e-3, min_lr=2e-3), "TrainConfig.min_lr must be at most lr (0.001), got 0.002"),
    (lambda: TrainConfig(eval_every=5, eval_size=0), "TrainConfig.eval_size must be at least 1 when eval_every > 0"),
    (lambda: GRPOConfig(eval_every=5, eval_size=0), "GRPOConfig.eval_size must be at least 1"),
    (lambda: TaskConfig(min_operands=5, max_operands=4), "TaskConfig.min_operands must be at most max_operands (4)"),
    (lambda: TaskConfig(share_direct=0.6), "TaskConfig.share_complete must be such that .* sum to 1.1"),
])
def test_cross_field_rules(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".*", "@")
                       .replace(".", r"\.").replace("@", ".*")):
        make()


def test_the_issue_examples():
    """The values the issue reported as silently accepted."""
    for make in (lambda: TrainConfig(grad_clip=math.nan), lambda: TrainConfig(lr=math.nan),
                 lambda: TrainConfig(weight_decay=-0.1), lambda: TrainConfig(lr="1e-3"),
                 lambda: TrainConfig(mask_question="no"), lambda: GRPOConfig(max_grad_norm=-1.0),
                 lambda: GRPOConfig(learning_rate="1e-4"), lambda: RewardConfig(correct=-1.0),
                 lambda: GRPOConfig(mask_truncated_completions="no"), lambda: TaskConfig(share_sloppy=math.nan),
                 lambda: GRPOConfig(num_generations=1), lambda: GRPOConfig(temperature=1e-30),
                 lambda: TrainConfig(steps=True), lambda: TaskConfig(max_operands=8.0)):
        with pytest.raises(ValueError, match=r"^\w+\.\w+ must be "):
            make()


def test_numbers_are_normalised():
    assert TrainConfig(lr=0.5, min_lr=0).min_lr == 0.0 and type(TrainConfig(lr=0.5, min_lr=0).min_lr) is float
    assert type(TaskConfig(share_sloppy=1).share_sloppy) is float  # frozen dataclasses too


# ----------------------------------------------------------------------------- generate's options

@pytest.mark.parametrize("name", sorted(OPTIONS))
@CHECKS
@given(data=st.data())
def test_generate_options_refuse_bad_values(name, data):
    value = data.draw(bad_values(OPTIONS[name]))
    with pytest.raises(ValueError, match=rf"^{name} must be "):
        check_options(**{name: value})


@pytest.mark.parametrize("t", [1e-3, 1e-30, 5e-324])
def test_vanishing_temperature_is_refused(t, tiny_model, tok):
    from minids.generate import generate
    with pytest.raises(ValueError, match="temperature must be 0 .greedy. or >= 0.01"):
        generate(tiny_model, tok, ["<|bos|>Q:1+2=?"], 4, temperature=t)
    out = generate(tiny_model, tok, ["<|bos|>Q:1+2=?"], 4, temperature=0.01, seed=0)
    assert all(math.isfinite(x) for x in out.logprobs.flatten().tolist())
