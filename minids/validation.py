"""One way to check every config: a spec beside each dataclass field, checked in `__post_init__`.

A value that is wrong in a way nobody anticipated should fail loudly when the
config is made, not as NaN weights an hour later. So every field of every
config dataclass declares what it accepts, right where it is defined:

    @dataclass
    class TrainConfig:
        lr: float = number(1e-3, gt=0, lt=1)  # peak learning rate
        mask_question: bool = flag(True)  # no loss on the question tokens
        pack: str = choice("auto", ("auto", "yes", "no"))

        RULES: ClassVar = (rule("min_lr", lambda c: c.min_lr <= c.lr, lambda c: f"<= lr ({c.lr})"),)

        def __post_init__(self):
            validate(self)

`validate` checks each field against its spec (type first: a string is not a
number, only True/False are booleans, a bool is not an integer; then
finiteness, range, choices), then the class's cross-field RULES. Every error
is a ValueError of one shape, naming the class, the field, the value and what
is accepted:

    TrainConfig.lr must be a finite number > 0 and < 1, got nan

A field with no spec is itself an error, so a new field cannot be added
unchecked (and the tests, generated from the fields, fail too).
`check_value` runs one spec on a plain argument (e.g. `generate`'s options).
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any, Callable

KINDS = ("int", "float", "bool", "choice", "text", "nested")
DEVICE = re.compile(r"auto|cpu|mps|cuda(:[0-9]+)?")


@dataclass(frozen=True)
class Spec:
    """What one field accepts."""

    kind: str  # one of KINDS
    ge: float | None = None  # value >= ge
    gt: float | None = None  # value > gt
    le: float | None = None  # value <= le
    lt: float | None = None  # value < lt
    choices: tuple = ()  # "choice": the allowed values
    pattern: str | None = None  # "text": a regular expression the whole string must match
    cls: type | None = None  # "nested": the dataclass the value must be
    optional: bool = False  # None is accepted too
    what: str = ""  # "text": how to describe the accepted strings

    def accepted(self) -> str:
        """What this spec accepts, in words: 'an integer >= 1', "one of ('grpo', 'dr_grpo')"."""
        if self.kind == "bool":
            text = "True or False"
        elif self.kind == "choice":
            text = f"one of {self.choices}"
        elif self.kind == "text":
            text = self.what or f"a string matching {self.pattern!r}"
        elif self.kind == "nested":
            text = f"a {self.cls.__name__}"
        else:
            text = "an integer" if self.kind == "int" else "a finite number"
            bounds = [f"{op} {b:g}" for op, b in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
                      if b is not None]
            text += (" " + " and ".join(bounds)) if bounds else ""
        return text + (" (or None)" if self.optional else "")


def _field(default, spec: Spec, default_factory=MISSING):
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata={"spec": spec})
    return field(default=default, metadata={"spec": spec})


def integer(default, *, ge=None, gt=None, le=None, lt=None, optional=False):
    """An int field (not a bool, not 2.0, not "2")."""
    return _field(default, Spec("int", ge=ge, gt=gt, le=le, lt=lt, optional=optional))


def number(default, *, ge=None, gt=None, le=None, lt=None, optional=False):
    """A finite float field (ints are accepted and stored as floats; bools and strings are not)."""
    return _field(default, Spec("float", ge=ge, gt=gt, le=le, lt=lt, optional=optional))


def flag(default):
    """A real bool: True or False, not 1, not "no"."""
    return _field(default, Spec("bool"))


def choice(default, choices, *, optional=False):
    """One of a few named values (the knobs that *are* the lesson)."""
    return _field(default, Spec("choice", choices=tuple(choices), optional=optional))


def text(default, pattern: str, what: str, *, optional=False):
    """A string whose whole text matches `pattern`; `what` says in words what is accepted."""
    return _field(default, Spec("text", pattern=pattern, what=what, optional=optional))


def device(default="auto"):
    """Where to run: "auto", "cpu", "cuda", "cuda:N" or "mps" (availability is checked when used)."""
    return text(default, DEVICE.pattern, "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")


def nested(cls, *, optional=False, default=MISSING):
    """A config inside a config (its own __post_init__ checked it)."""
    if optional:
        return _field(None if default is MISSING else default, Spec("nested", cls=cls, optional=True))
    return _field(MISSING, Spec("nested", cls=cls), default_factory=cls)


@dataclass(frozen=True)
class Rule:
    """A cross-field rule: `check(config)` must hold; the error is reported on `name`."""

    name: str
    check: Callable[[Any], bool]
    accepted: Callable[[Any], str]


def rule(name: str, check: Callable[[Any], bool], accepted: Callable[[Any], str] | str) -> Rule:
    return Rule(name, check, accepted if callable(accepted) else (lambda c, s=accepted: s))


def spec_of(cls, name: str) -> Spec:
    """The Spec declared for field `name` of dataclass `cls` (TypeError if it has none)."""
    for f in fields(cls):
        if f.name == name:
            if "spec" not in f.metadata:
                raise TypeError(f"{cls.__name__}.{name} has no validation spec: declare it with integer(), "
                                f"number(), flag(), choice(), text(), device() or nested() from minids.validation")
            return f.metadata["spec"]
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def fail(owner: str, name: str, value, accepted: str):
    raise ValueError(f"{owner}.{name} must be {accepted}, got {value!r}")


def check_value(value, spec: Spec, name: str, owner: str = ""):
    """Check one value against a spec; returns it normalised (ints as floats for a float spec).

    `owner` prefixes the name in the error ("TrainConfig" -> "TrainConfig.lr").
    """
    label = f"{owner}.{name}" if owner else name
    if value is None and spec.optional:
        return None
    ok = True
    if spec.kind == "bool":
        ok = isinstance(value, bool)
    elif spec.kind in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            ok = False
        elif spec.kind == "int":
            ok = isinstance(value, numbers.Integral)
            value = int(value) if ok else value
        else:
            value = float(value)
            ok = math.isfinite(value)
        if ok:
            ok = ((spec.ge is None or value >= spec.ge) and (spec.gt is None or value > spec.gt)
                  and (spec.le is None or value <= spec.le) and (spec.lt is None or value < spec.lt))
    elif spec.kind == "choice":
        ok = any(type(value) is type(c) and value == c for c in spec.choices)
    elif spec.kind == "text":
        ok = isinstance(value, str) and re.fullmatch(spec.pattern, value) is not None
    elif spec.kind == "nested":
        ok = isinstance(value, spec.cls)
    else:
        raise TypeError(f"unknown spec kind {spec.kind!r}; one of {KINDS}")
    if not ok:
        raise ValueError(f"{label} must be {spec.accepted()}, got {value!r}")
    return value


def validate(config) -> None:
    """Check every field of a config dataclass against its spec, then the class's RULES.

    Values are normalised in place (an int given to a float field is stored as
    a float), frozen dataclasses included.
    """
    cls = type(config)
    owner = cls.__name__
    for f in fields(cls):
        value = check_value(getattr(config, f.name), spec_of(cls, f.name), f.name, owner)
        if value is not getattr(config, f.name):
            object.__setattr__(config, f.name, value)
    for r in getattr(cls, "RULES", ()):
        if not r.check(config):
            fail(owner, r.name, getattr(config, r.name), r.accepted(config))


def specs(cls) -> dict[str, Spec]:
    """{field name: Spec} of a config dataclass (TypeError names a field without one)."""
    assert is_dataclass(cls)
    return {f.name: spec_of(cls, f.name) for f in fields(cls)}
