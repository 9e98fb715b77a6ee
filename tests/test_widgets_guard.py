"""Every numeric control of the widgets, set to anything (NaN, infinities, out of range), gives a visible
message or a sane display: never an exception, never "nan" on screen."""

import math
import re

import ipywidgets
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import widgets.grpo
import widgets.rollouts
import widgets.sampling
from widgets.guard import bad_controls

ANY = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([math.nan, math.inf, -math.inf, -1.0, 1e9])
SOME = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
NAN = re.compile(r"\b(nan|inf)\b", re.IGNORECASE)


def shows_sanely(caption: str, value) -> None:
    if "minids-message" in caption:
        return
    assert not NAN.search(caption), caption
    assert isinstance(value, (int, float)) and math.isfinite(value)


def test_guard_messages():
    s = ipywidgets.FloatSlider(value=1.0, min=0.0, max=2.0, description="temperature")
    assert bad_controls(s) is None
    s.value = math.nan
    assert "temperature must be a finite number, got nan" in bad_controls(s)
    t = ipywidgets.FloatText(value=5.0, description="x")
    t.min, t.max = 0.0, 2.0  # a plain attribute: the guard reads bounds where a control has them
    assert "x must lie between 0 and 2, got 5" in bad_controls(t)


@pytest.fixture
def sampler(tiny_model, tok, shown_by):
    shown_by(widgets.sampling)
    return widgets.sampling.SamplingWidget(tiny_model, tok)


@SOME
@given(name=st.sampled_from(["temperature", "top_p"]), value=ANY)
def test_sampling_widget_controls(sampler, name, value):
    control = getattr(sampler, name)
    control.value = value
    shows_sanely(sampler.caption.value, control.value)


@pytest.fixture
def inspector(tiny_model, tok, shown_by):
    shown_by(widgets.rollouts)
    return widgets.rollouts.RolloutInspector(tiny_model, tok)


@SOME
@given(value=ANY)
def test_rollout_inspector_temperature(inspector, value):
    inspector.temperature.value = value
    shows_sanely(inspector.caption.value, inspector.temperature.value)


@SOME
@given(i=st.integers(0, 3), value=ANY)
def test_advantage_playground_rewards(shown_by, i, value):
    shown_by(widgets.grpo)
    w = widgets.grpo.AdvantagePlayground()
    w.sliders[i].value = value
    shows_sanely(w.caption.value, w.sliders[i].value)
