"""widgets/passk.py: pass@k curves, per-length rows, confidence intervals and effect sizes."""

import statistics

import plotly.graph_objects as go
import pytest

import widgets.passk as W


def fake_run(base_p1, rl_p1, ks=(1, 2, 4)):
    """A passk.json-shaped dict with two operand counts."""
    def model(p1, scale):
        return {str(n): {"accuracy": p1 * scale, "gold_chain": p1 * scale / 2,
                         "pass_at_k": {str(k): min(1.0, p1 * scale * k) for k in ks},
                         "pass_at_k_gold": {str(k): min(1.0, p1 * scale * k) / 2 for k in ks}}
                for n, scale in ((3, 1.0), (4, 0.5))}
    return {"ks": list(ks), "models": {"base": model(base_p1, 1), "rl": model(rl_p1, 1)}}


def test_passk_curve_averages_over_lengths_and_refuses_unknown_ones():
    run = fake_run(0.2, 0.8)
    assert W.passk_curve(run, "base") == pytest.approx({1: 0.15, 2: 0.3, 4: 0.6})  # (0.2 + 0.1) / 2 ...
    assert W.passk_curve(run, "rl", [3]) == pytest.approx({1: 0.8, 2: 1.0, 4: 1.0})
    assert W.passk_curve(run, "base", [3], key="pass_at_k_gold") == pytest.approx({1: 0.1, 2: 0.2, 4: 0.4})
    with pytest.raises(ValueError, match="operand counts"):
        W.passk_curve(run, "rl", [9])


def test_length_rows_mean_and_range_over_seeds():
    rows = W.length_rows([fake_run(0.2, 0.8), fake_run(0.4, 0.6)])
    assert [r["operands"] for r in rows] == [3, 4]
    assert rows[0]["base_accuracy"] == pytest.approx((0.3, 0.2, 0.4))
    assert rows[1]["rl_pass_at_4"] == pytest.approx((1.0, 1.0, 1.0))
    assert rows[1]["rl_gold_pass_at_4"] == pytest.approx((0.5, 0.5, 0.5))


def test_mean_ci_and_cohens_d_hand_values():
    m, lo, hi = W.mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and hi - m == pytest.approx(4.30 * 1.0 / 3 ** 0.5)
    assert W.cohens_d([2, 3, 4], [1, 2, 3]) == pytest.approx(1.0)  # pooled sd 1, means 3 vs 2
    assert W.cohens_d([1, 2, 3], [2, 3, 4]) == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        W.mean_ci([1.0])


def test_figures_carry_the_data():
    fig = W.passk_figure({"a": fake_run(0.2, 0.8)})
    assert isinstance(fig, go.Figure) and len(fig.data) == 2
    assert list(fig.data[1].y) == pytest.approx([0.6, 0.9, 1.0])  # rl: (0.8 + 0.4)/2, (1 + 0.8)/2, 1
    run = {**fake_run(0.2, 0.8), "chance": {"1": 0.1, "2": 0.19, "4": 0.34}}
    assert W.passk_figure({"a": run}).data[0].name == "guessing"
    assert len(W.passk_figure({"a": run}, key="pass_at_k_gold").data) == 2
    bars = W.length_figure(W.length_rows([fake_run(0.2, 0.8)]), "accuracy")
    assert [list(b.y) for b in bars.data] == [pytest.approx([0.2, 0.1]), pytest.approx([0.8, 0.4])]


def test_explorer_redraws_for_the_chosen_length(shown_by):
    seen = shown_by(W)
    w = W.PassKExplorer({"a": fake_run(0.2, 0.8)}, key="pass_at_k")
    w.length.value = 3
    assert len(seen) == 2 and "operands: 3" in seen[-1].layout.title.text
    assert list(seen[-1].data[0].y) == pytest.approx([0.2, 0.4, 0.8])
