"""The training dashboard: series helpers by hand, figures from fake histories, and a live callback."""

import plotly.graph_objects as go
import pytest
import torch

from minids.train import TrainConfig, pretrain
from widgets.dashboard import (TrainingDashboard, balance_comparison_figure, balance_summary, binned,
                               dashboard_figure, live_figure, load_series, max_load_series, rolling_mean, series, status_line)


def fake_history(n_steps, balanced=True, n_layers=2, n_experts=4, eval_every=5):
    """Records shaped like pretrain's: loss falls; loads even (balanced) or collapsed onto expert 0."""
    history = []
    for s in range(1, n_steps + 1):
        load = [1 / n_experts] * n_experts if balanced else [0.5, 0.5 / (n_experts - 1)] + \
            [0.5 / (n_experts - 1)] * (n_experts - 2)
        r = {"step": s, "loss": 5.0 / s, "lr": 1e-3, "tokens_per_s": 1000.0 + s,
             "load": [list(load) for _ in range(n_layers)],
             "bias": [[0.01 * s * (e - 1.5) for e in range(n_experts)] for _ in range(n_layers)]}
        if s % eval_every == 0:
            r["eval/working_accuracy"], r["eval/acc_no_working"] = s / n_steps, 0.1
        history.append(r)
    return history


def test_binned_by_hand():
    assert binned([1, 2, 3, 4], [1, 3, 5, 7], 2) == ([2, 4], [2.0, 6.0])
    assert binned([1, 2, 3], [1, 2, 3], 10) == ([1, 2, 3], [1.0, 2.0, 3.0])
    x, y = binned(list(range(1, 1001)), [1.0] * 1000, 300)
    assert len(x) <= 300 and x[-1] == 1000 and set(y) == {1.0}


def test_rolling_mean_by_hand():
    assert rolling_mean(torch.tensor([[1.0], [3.0], [5.0]]), 2).flatten().tolist() == [1.0, 2.0, 4.0]
    x = torch.arange(12.0).reshape(6, 2)
    assert torch.equal(rolling_mean(x, 1), x.double())
    torch.testing.assert_close(rolling_mean(x, 100)[-1], x.double().mean(0))  # a window longer than the run


def test_series_helpers():
    h = fake_history(10)
    steps, acc = series(h, "eval/working_accuracy")
    assert steps == [5, 10] and acc == [0.5, 1.0]
    steps, loads = load_series(h, layer=1)
    assert steps == list(range(1, 11)) and loads.shape == (10, 4)
    assert max_load_series(fake_history(3, balanced=False))[1] == [0.5, 0.5, 0.5]
    flip = fake_history(2)
    flip[0]["load"][0], flip[1]["load"][0] = [0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]
    assert max_load_series(flip, window=1)[1] == [0.5, 0.5]
    assert max_load_series(flip, window=2)[1] == [0.5, 0.25]  # averaged, the two steps cover all experts
    s = balance_summary(fake_history(20, balanced=False), last=5)
    assert s["max_fraction"] == pytest.approx(0.5) and s["max_over_mean"] == pytest.approx(2.0)
    assert balance_summary(fake_history(20))["cv"] == pytest.approx(0.0, abs=1e-9)
    assert s["bias_range"] == pytest.approx(0.01 * 20 * 3)
    assert s["idle"] == 0 and balance_summary(fake_history(5, balanced=False, n_experts=8))["idle"] == 0
    dead = fake_history(5)
    for r in dead:
        r["load"][0] = [0.5, 0.5, 0.0, 0.0]
    assert balance_summary(dead)["idle"] == 2


def test_dashboard_figure_holds_the_history():
    h = fake_history(20)
    fig = dashboard_figure(h)
    assert isinstance(fig, go.Figure)
    assert list(fig.data[0].y) == [r["loss"] for r in h]
    assert list(fig.data[1].x) == [5, 10, 15, 20]
    # 4 fixed traces + (load, bias) x 2 layers x 4 experts
    assert len(fig.data) == 4 + 2 * 2 * 4
    assert len(dashboard_figure(fake_history(2000), max_points=100).data[0].x) <= 100
    assert len(dashboard_figure([]).data) == 4  # before the first record


def test_status_line():
    assert "waiting" in status_line([])
    line = status_line(fake_history(10), total_steps=50)
    assert line.startswith("step 10 / 50 · loss 0.500") and "working accuracy 1.00 (step 10)" in line


def test_comparison_figure_separates_balanced_from_collapsed():
    runs = {"aux_free": fake_history(30), "none": fake_history(30, balanced=False)}
    fig = balance_comparison_figure(runs)
    assert isinstance(fig, go.Figure)
    largest = {t.name: list(t.y) for t in fig.data if t.name.endswith("largest share")}
    assert max(largest["aux_free: largest share"]) == pytest.approx(0.25)
    assert min(largest["none: largest share"]) == pytest.approx(0.5)
    assert len(fig.data) == 2 * (2 * 4 + 1)


def test_callback_redraws_every_n_steps():
    d = TrainingDashboard(total_steps=23, every=10, min_interval=0)
    for r in fake_history(23, eval_every=1000):
        d.callback(r)
    assert d.draws == 3  # steps 10, 20 and the last
    assert len(d.history) == 23
    assert list(d.chart.data[0].y)[-1] == pytest.approx(5.0 / 23)
    assert "step 23 / 23" in d.status.value
    assert len(d.chart.data) == 4 + 2  # the live chart: 4 curves + one largest-share line per MoE layer
    assert len(d.figure().data) == 4 + 2 * 2 * 4  # the full static figure after training: every expert
    with pytest.raises(ValueError, match="every"):
        TrainingDashboard(every=0)
    with pytest.raises(ValueError, match="min_interval"):
        TrainingDashboard(min_interval=-1)


def test_redraws_are_throttled_in_time_but_the_last_step_always_draws():
    now = [0.0]
    d = TrainingDashboard(total_steps=100, every=1, min_interval=1.0, clock=lambda: now[0])
    for r in fake_history(100, eval_every=1000):
        d.callback(r)
        now[0] += 0.25  # four steps a second: at most one redraw a second
    assert d.draws == len(range(1, 100, 4)) + 1  # steps 1, 5, 9, ..., 97, and the last
    assert "step 100 / 100" in d.status.value  # the status line follows every due step
    assert list(d.chart.data[0].x)[-1] == 100  # nothing lost: the last redraw holds the whole history


def test_live_chart_is_small_fills_the_width_and_shows_the_largest_share():
    fig = live_figure(fake_history(50, balanced=False, n_layers=3))
    assert len(fig.data) == 4 + 3
    share = [t for t in fig.data if t.name.startswith("MoE layer")]
    assert [t.name for t in share] == ["MoE layer 1", "MoE layer 2", "MoE layer 3"]
    assert all(v == pytest.approx(0.5) for v in share[0].y)  # collapsed onto expert 0: half the slots
    d = TrainingDashboard(total_steps=5)
    assert d.chart.layout.width is None and d.chart.layout.autosize and d.chart._config.get("responsive")
    assert d.layout.width == "100%"


def test_dashboard_follows_a_real_pretraining_run(tiny_config, tok):
    torch.manual_seed(0)
    from minids.model import Transformer
    model = Transformer(tiny_config)
    d = TrainingDashboard(total_steps=6, every=3, min_interval=0)
    config = TrainConfig(steps=6, batch_size=4, eval_every=6, eval_size=4, warmup_steps=2)
    result = pretrain(model, tok, config=config, callback=d.callback, progress=False)
    assert [r["step"] for r in d.history] == [r["step"] for r in result.history]
    fig = d.figure()
    assert list(fig.data[0].y) == pytest.approx([r["loss"] for r in result.history])
    assert list(fig.data[1].x) == [6]  # the evaluation record
    assert len(fig.data) == 4 + 2 * tiny_config.n_moe_layers * tiny_config.n_routed_experts
    assert d.draws == 2
