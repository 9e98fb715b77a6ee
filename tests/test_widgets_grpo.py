"""widgets/grpo.py, rollouts.py, rl_dashboard.py: advantage playground, clipped objective, reward table,
rollout inspector, RL dashboard."""

import math

import plotly.graph_objects as go
import pytest

from minids.r1zero import shipped_run
from minids.tasks import Problem
from widgets.grpo import (AdvantagePlayground, advantage_caption, advantage_figure, advantage_summary, clip_figure,
                          clipped_objective, kl_penalty)
from widgets.rl_dashboard import RLDashboard, compare_figure, dashboard_figure, smoothed, window_means, window_table
from widgets.rollouts import (RolloutInspector, completion_html, correction_outcomes, error_spans, filler_dots,
                              parse_question, reward_rows, reward_table_html, rollout_figure, rollout_table_html,
                              sample_group, side_by_side, side_by_side_html)

GOOD = "<think>7+5=2,2-9=3,3+3=6</think><answer>6</answer><|eos|>"


# ----------------------------------------------------------------------------- advantages


def test_worked_example_90_80_70_60():
    s = advantage_summary([90, 80, 70, 60], "group")
    assert s["mean"] == 75
    assert s["std"] == pytest.approx(12.9099, abs=1e-3)
    assert s["advantages"] == pytest.approx([1.1619, 0.3873, -0.3873, -1.1619], abs=1e-3)
    assert advantage_summary([90, 80, 70, 60], "none")["advantages"] == pytest.approx([15, 5, -5, -15])
    assert "+1.16" in advantage_caption(s) and "mean 75" in advantage_caption(s)


def test_equal_rewards_zero_advantage_and_single_reward_refused():
    assert advantage_summary([0.1, 0.1, 0.1], "group")["advantages"] == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        advantage_summary([1.0])


def test_advantage_figure_holds_rewards_and_advantages():
    fig = advantage_figure(advantage_summary([90, 80, 70, 60], "none"))
    assert isinstance(fig, go.Figure)
    assert list(fig.data[0].y) == [90, 80, 70, 60]
    assert list(fig.data[1].y) == pytest.approx([15, 5, -5, -15])


def test_playground_wiring_caption_and_output_follow_controls():
    w = AdvantagePlayground(rewards=(90, 80, 70, 60))
    assert "+1.16" in w.caption.value and list(w.fig.data[0].y) == [90, 80, 70, 60]
    w.sliders[0].value = 60  # rewards 60, 80, 70, 60: mean 67.5
    assert "mean 67.5" in w.caption.value and list(w.fig.data[0].y) == [60, 80, 70, 60]
    assert w.summary["advantages"][1] > 0
    before = w.caption.value
    w.scale.value = "none"
    assert w.caption.value != before and "+12.50" in w.caption.value
    assert list(w.fig.data[1].y) == pytest.approx([-7.5, 12.5, 2.5, -7.5])


# ----------------------------------------------------------------------------- clipped objective, KL


def test_clipped_objective_matches_hand_formula_and_flattens():
    ratios = [0.5, 0.8, 0.95, 1.0, 1.1, 1.2, 1.5]
    for A in (1.0, -1.0):
        c = clipped_objective(ratios, A, epsilon=0.2)
        hand = [min(r * A, min(max(r, 0.8), 1.2) * A) for r in ratios]
        assert c["objective"] == pytest.approx(hand, abs=1e-6)
    pos, neg = clipped_objective([1.5], 1.0), clipped_objective([0.5], -1.0)
    assert pos["slope"] == [0.0] and neg["slope"] == [0.0]  # beyond the clip: no push
    assert clipped_objective([0.5], 1.0)["slope"] == pytest.approx([1.0])  # below it: still pushed up
    fig = clip_figure({"A = +1": clipped_objective(ratios, 1.0), "A = -1": clipped_objective(ratios, -1.0)})
    assert len(fig.data) == 4 and list(fig.data[0].x) == ratios


def test_kl_penalty_is_k3():
    d = [-1.0, 0.0, 0.5, 2.0]
    assert kl_penalty(d) == pytest.approx([math.exp(x) - x - 1 for x in d], abs=1e-6)
    assert kl_penalty([0.0]) == [0.0]


# ----------------------------------------------------------------------------- rewards and highlighting


def test_reward_rows_and_table():
    rows = reward_rows([GOOD, "<think></think><answer>5</answer>", "<think>7+5=2</think>6",
                        "<think></think><answer>6</answer>!!"], gold=6)
    assert [r["reward"] for r in rows] == pytest.approx([1.1, 0.1, 0.0, 0.0])
    assert [r["error"] for r in rows] == [None, None, "missing <answer>", "text after </answer>"]
    table = reward_table_html(rows)
    assert table.count("<tr>") == 4 and "missing &lt;answer&gt;" in table


@pytest.mark.parametrize("text, error, marked", [
    ("hi<think></think><answer>6</answer>", "text before <think>", "hi"),
    ("<think></think>x<answer>6</answer>", "text between </think> and <answer>", "x"),
    ("<think></think><answer>6</answer>!!", "text after </answer>", "!!"),
    ("<think><think></think><answer>6</answer>", "two <think> tags", "<think>"),
    ("<answer>6</answer><think></think>", "<answer> comes before <think>", "<answer>"),
])
def test_error_spans_point_at_the_malformed_part(text, error, marked):
    from minids.rewards import parse_completion
    assert parse_completion(text).error == error
    spans = error_spans(text, error)
    assert len(spans) == 1 and text[spans[0][0]:spans[0][1]] == marked
    assert 'class="malformed"' in completion_html(text, error)


def test_well_formed_and_missing_tags_have_no_marked_span():
    assert error_spans(GOOD, None) == [] and 'class="malformed"' not in completion_html(GOOD)
    assert error_spans("<think>1</think>6", "missing <answer>") == []
    assert "✗ missing &lt;answer&gt;" in completion_html("<think>1</think>6", "missing <answer>")
    assert "&lt;script&gt;" in completion_html("<script>", "missing <think>")  # escaped


def test_parse_question():
    p, msg = parse_question("7+5-9+3")
    assert msg is None and p.answer == 6 and p.prompt == "<|bos|>Q:7+5-9+3=?"
    assert parse_question(" Q:7 + 5=? ")[0] == Problem((7, 5), ("+",), 10)
    for bad in ("", "   ", "7", "7+55", "7*5", "seven plus five", "7+5-"):
        p, msg = parse_question(bad)
        assert p is None and msg


def test_parse_question_refuses_too_long_for_context(tok):
    p, msg = parse_question("+".join(["1"] * 60), tok, max_tokens=64)
    assert p is None and "tokens" in msg


# ----------------------------------------------------------------------------- rollouts


def test_sample_group_scores_like_grpo(tiny_model, tok):
    problem = Problem((7, 5, 9), ("+", "-"), 10)
    rows = sample_group(tiny_model, tok, problem, G=6, temperature=1.0, seed=3, max_new_tokens=12)
    assert len(rows) == 6
    assert sum(r["advantage"] for r in rows) == pytest.approx(0.0, abs=1e-5)
    for r in rows:
        assert r["advantage"] == pytest.approx(r["reward"] - sum(x["reward"] for x in rows) / 6, abs=1e-5)
    again = sample_group(tiny_model, tok, problem, G=6, temperature=1.0, seed=3, max_new_tokens=12)
    assert [r["completion"] for r in rows] == [r["completion"] for r in again]  # same seed, same samples
    html = rollout_table_html(rows)
    assert html.count("<tr>") == 6
    assert list(rollout_figure(rows).data[0].y) == pytest.approx([r["advantage"] for r in rows])


def test_inspector_wiring_and_bad_input(tiny_model, tok):
    w = RolloutInspector(tiny_model, tok, G=4, max_new_tokens=12)
    assert len(w.rows) == 4 and "4 samples" in w.caption.value
    first = w.caption.value
    w.problem.value = 5
    assert w.question.value == w.problems[5].question and w.caption.value != first
    w.G.value = 3
    assert len(w.rows) == 3 and w.table.value.count("<tr>") == 3 and len(w.fig.data[0].y) == 3
    w.temperature.value = 0.0  # greedy: all samples identical, so every advantage is 0
    assert "zero advantage" in w.caption.value
    for bad in ("", "hello", "+".join(["1"] * 80)):
        w.question.value = bad
        assert "minids-message" in w.caption.value and w.rows == [] and w.fig is None
    w.question.value = "1+2"
    assert "1+2 = 3" in w.caption.value and "trained on 3 to 8" in w.caption.value
    before = [r["completion"] for r in w.rows]
    w.temperature.value = 1.0
    w._resample()
    assert w.seed == 1 and len(w.rows) == 3 and isinstance(before, list)


def test_side_by_side(tiny_model, tok):
    probs = [Problem((1, 2, 3), ("+", "+"), 10), Problem((9, 9, 9), ("-", "-"), 10)]
    rows = side_by_side({"a": tiny_model, "b": tiny_model}, tok, probs, max_new_tokens=10)
    assert [r["answer"] for r in rows] == [6, 1]
    assert rows[0]["a"] == rows[0]["b"]  # same model, greedy: same text
    assert side_by_side_html(rows, ["a", "b"]).count("<tr>") == 2


# ----------------------------------------------------------------------------- histories and dashboard


def fake_history(n=10):
    return [{"step": i + 1, "reward": 0.1 * i, "accuracy": min(1.0, 0.1 * i), "format": 1.0,
             "think_length": 5.0 + i, "think_length_wrong": None if i == 9 else 2.0 + i, "entropy": 0.3,
             "completions/clipped_ratio": 0.0, "self_corrections": 0.0,
             **({"eval/greedy_accuracy": 0.5} if i % 5 == 0 else {})} for i in range(n)]


def test_window_means_and_smoothing_weigh_wrong_answers():
    h = fake_history()
    assert window_means(h, "think_length", 5) == pytest.approx([7.0, 12.0])
    # wrong-answer lengths weigh by the wrong share (1 - accuracy); step 10 has none (all right)
    w = [1 - 0.1 * i for i in range(5, 9)]
    expect = sum(wi * (2 + i) for wi, i in zip(w, range(5, 9))) / sum(w)
    assert window_means(h, "think_length_wrong", 5)[1] == pytest.approx(expect)
    steps, vals = smoothed(h, "think_length", 3)
    assert steps == list(range(1, 11)) and vals[0] == 5.0 and vals[-1] == pytest.approx(13.0)
    assert "think" in window_table({"x": h, "y": h}, "think_length", 5)


def test_dashboard_callback_redraws_in_place():
    d = RLDashboard(total_steps=10, every=4, min_interval=0)
    assert len(d.chart.data) == 7
    assert d.chart.layout.width is None and d.chart._config.get("responsive") and d.layout.width == "100%"
    for r in fake_history():
        d.callback(r)
    assert len(d.history) == 10 and "step 10 / 10" in d.status.value
    # first step, evaluations (steps 1, 6), multiples of 4 and the last step
    assert d.draws == len({1, 4, 6, 8, 10})
    acc = next(t for t in d.chart.data if t.name == "sampled accuracy")
    assert list(acc.y) == pytest.approx([r["accuracy"] for r in fake_history()])
    fig = d.figure()
    assert isinstance(fig, go.Figure) and list(fig.data[4].y) == [5.0 + i for i in range(10)]
    with pytest.raises(ValueError):
        RLDashboard(every=0)
    now = [0.0]
    slow = RLDashboard(total_steps=10, every=1, clock=lambda: now[0])  # 1 s apart at most, 0.3 s a step
    for r in fake_history():
        slow.callback(r)
        now[0] += 0.3
    assert slow.draws == len({1, 5, 9, 10})  # the first step, then once a second, and the last step
    assert list(slow.chart.data[4].y) == [5.0 + i for i in range(10)]


def test_dashboard_figure_empty_and_compare_shipped_runs():
    assert all(len(t.x) == 0 for t in dashboard_figure([]).data)
    h0, _ = shipped_run("seed0")
    h1, _ = shipped_run("format_only")
    fig = compare_figure({"seed0": h0, "format_only": h1}, keys=("accuracy", "think_length"), smooth=10)
    assert len(fig.data) == 4 and len(fig.data[0].x) == len(h0)
    # the default run's chain grows; the format-only control's does not
    assert window_means(h0, "think_length")[-1] > 1.5 * window_means(h0, "think_length")[0]
    assert window_means(h1, "think_length")[-1] < 1.2 * window_means(h1, "think_length")[0]


def test_correction_outcomes_and_filler_dots():
    assert correction_outcomes("<think>7+5=3 wait 7+5=2,2-9=3</think>") == {
        "fixed": 1, "redundant": 0, "broke": 0, "both_wrong": 0}
    c = correction_outcomes("<think>7+5=2 wait 7+5=2,2-9=3 wait 2-9=4,1+1=5 wait 1+1=7</think>")
    assert c == {"fixed": 0, "redundant": 1, "broke": 1, "both_wrong": 1}
    assert filler_dots("<think>7+5=2,..2-9=3,.3+1=4</think><answer>4</answer>") == 3
    assert filler_dots("<answer>4</answer>") == 0


def test_settings_diff_names_what_a_recorded_run_changed():
    from widgets.rl_dashboard import settings_diff
    ref = shipped_run("seed0")[1]
    assert settings_diff(ref, ref) == {}
    assert settings_diff(shipped_run("kl")[1], ref) == {"grpo.beta": 0.04}
    assert settings_diff(shipped_run("seed1")[1], ref) == {"seed": 1}
    assert settings_diff(shipped_run("no_chain")[1], ref)["task.share_complete"] == 0.0
