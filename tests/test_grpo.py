"""GRPO: advantages, the clipped surrogate and its normalisers, log-probs, config checks, the trainer."""

import copy
import math

import pytest
import torch

import minids.grpo as grpo_mod
from minids.generate import generate, left_pad
from minids.grpo import GRPOConfig, group_advantages, grpo_loss, grpo_train, token_logprobs
from minids.model import Transformer
from minids.tasks import TaskConfig
from minids.train import TrainConfig, pretrain

# Two operands and half the documents written without the answer tags: a briefly
# pretrained tiny model keeps the format about half the time, so format rewards spread.
TOY_TASK = TaskConfig(min_operands=2, max_operands=2, share_sloppy=0.5)


def rl_config(**kw):
    """A GRPOConfig for a few fast CPU steps on the toy task (format reward only, no evaluation)."""
    base = dict(steps=1, prompts_per_step=4, num_generations=4, learning_rate=3e-3, format_only=True,
                scale_rewards="group", max_completion_length=24, eval_every=0, seed=0, device="cpu")
    return GRPOConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def pretrained(tok, tiny_config):
    """The tiny model after 100 pretraining steps on TOY_TASK (about 1 s); copy before training it."""
    torch.manual_seed(4)
    model = Transformer(tiny_config)
    pretrain(model, tok, TOY_TASK, TrainConfig(steps=100, batch_size=16, warmup_steps=5, lr=1e-2, min_lr=1e-3,
                                               eval_every=0, seed=4, device="cpu"), progress=False)
    return model.eval()


def params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def changed(before, model):
    return [n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())]


# ----------------------------------------------------------------------------- group_advantages

@pytest.mark.parametrize("scale", ["none", "group"])
def test_equal_rewards_give_exactly_zero_advantage(scale):
    """A group whose samples all score the same teaches nothing: advantage exactly 0, never NaN."""
    adv = group_advantages(torch.tensor([0.1, 0.1, 0.1, 0.1, 1.0, 1.0, 1.0, 1.0]), 4, scale)
    assert not torch.isnan(adv).any()
    assert torch.equal(adv, torch.zeros(8))


def test_worked_example_unscaled_and_scaled():
    """90, 80, 70, 60: mean 75 -> 15, 5, -5, -15; scaled by the sample std (12.91) + 1e-4."""
    r = torch.tensor([90.0, 80.0, 70.0, 60.0])
    torch.testing.assert_close(group_advantages(r, 4, "none"), torch.tensor([15.0, 5.0, -5.0, -15.0]))
    std = math.sqrt((15**2 + 5**2 + 5**2 + 15**2) / 3)  # Bessel-corrected
    assert std == pytest.approx(12.91, abs=5e-3)
    expected = torch.tensor([15.0, 5.0, -5.0, -15.0]) / (std + 1e-4)
    torch.testing.assert_close(group_advantages(r, 4, "group"), expected)
    assert group_advantages(r, 4, "group")[0].item() == pytest.approx(1.16, abs=5e-3)


def test_groups_are_consecutive_blocks():
    """Rewards are grouped in consecutive blocks of G (prompt-major), not interleaved."""
    adv = group_advantages(torch.tensor([1.0, 1.0, 0.0, 0.0]), 2)
    assert torch.equal(adv, torch.zeros(4))  # interleaving would give +-0.5
    adv = group_advantages(torch.tensor([0.0, 1.0, 2.0, 10.0, 20.0, 30.0]), 3)
    torch.testing.assert_close(adv, torch.tensor([-1.0, 0.0, 1.0, -10.0, 0.0, 10.0]))


# ----------------------------------------------------------------------------- grpo_loss

def test_fresh_rollouts_ratio_one_loss_is_weighted_mean_advantage():
    """logp == old_logp: nothing clipped, and the loss is -A averaged as each loss_type says."""
    torch.manual_seed(0)
    logp = -torch.rand(2, 4) * 3
    adv = torch.tensor([1.5, -0.5])
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)  # lengths 2 and 4
    loss, stats = grpo_loss(logp, logp.clone(), adv, mask, loss_type="grpo")
    assert stats["clip_ratio"] == 0.0 and stats["kl"] == 0.0
    assert loss.item() == pytest.approx(-(1.5 + -0.5) / 2)  # each sequence's mean is -A_i
    loss, _ = grpo_loss(logp, logp.clone(), adv, mask, loss_type="dr_grpo", max_completion_length=8)
    assert loss.item() == pytest.approx(-(2 * 1.5 + 4 * -0.5) / (2 * 8))


def test_clipping_hand_example():
    """eps 0.2: ratio 1.5, A>0 -> 1.2*A, no gradient; ratio 0.5, A<0 -> 0.8*A, no gradient;
    ratio 0.5, A>0 -> 0.5*A (unclipped), gradient -ratio*A / normaliser."""
    old = torch.tensor([[-1.0], [-1.0], [-1.0]])
    logp = (old + torch.log(torch.tensor([[1.5], [0.5], [0.5]]))).requires_grad_()
    adv = torch.tensor([1.0, -1.0, 1.0])
    mask = torch.ones(3, 1, dtype=torch.bool)
    loss, stats = grpo_loss(logp, old, adv, mask, epsilon=0.2, loss_type="dr_grpo", max_completion_length=1)
    assert loss.item() == pytest.approx((-1.2 + 0.8 - 0.5) / 3)
    assert stats["clip_ratio"] == pytest.approx(2 / 3)
    loss.backward()
    assert logp.grad[0, 0].item() == 0.0
    assert logp.grad[1, 0].item() == 0.0
    assert logp.grad[2, 0].item() == pytest.approx(-0.5 / 3)

    # a wider upper range leaves ratio 1.5 unclipped: the term is 1.5*A and the gradient returns
    logp.grad = None
    loss, stats = grpo_loss(logp, old, adv, mask, epsilon=0.2, epsilon_high=0.6, max_completion_length=1)
    assert loss.item() == pytest.approx((-1.5 + 0.8 - 0.5) / 3)
    assert stats["clip_ratio"] == pytest.approx(1 / 3)
    loss.backward()
    assert logp.grad[0, 0].item() == pytest.approx(-1.5 / 3)


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo"])
def test_mask_excludes_prompt_and_padding_tokens(loss_type):
    """Changing logp / old / ref where mask is False changes neither loss, KL nor clip stats."""
    torch.manual_seed(1)
    logp, old, ref = (-torch.rand(3, 5) * 2 for _ in range(3))
    adv = torch.tensor([1.0, -2.0, 0.5])
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    kw = dict(beta=0.1, loss_type=loss_type, max_completion_length=5)
    loss, stats = grpo_loss(logp, old, adv, mask, ref_logp=ref, **kw)
    noise = torch.randn(3, 5) * 5 * (~mask)
    logp2 = (logp + noise).requires_grad_()
    loss2, stats2 = grpo_loss(logp2, old - noise, adv, mask, ref_logp=ref + 3 * noise, **kw)
    assert loss2.item() == pytest.approx(loss.item(), abs=1e-6)
    assert stats2 == pytest.approx(stats, abs=1e-6)
    loss2.backward()
    assert torch.equal(logp2.grad * (~mask), torch.zeros(3, 5))
    assert (logp2.grad[mask] != 0).all()


def test_kl_k3_zero_at_reference_and_positive_elsewhere():
    """k3 = exp(ref - logp) - (ref - logp) - 1: 0 when ref == logp, hand value otherwise."""
    logp = torch.log(torch.tensor([[0.5, 0.5]]))
    mask = torch.ones(1, 2, dtype=torch.bool)
    zero_adv = torch.zeros(1)
    loss, stats = grpo_loss(logp, logp, zero_adv, mask, beta=0.5, ref_logp=logp.clone())
    assert loss.item() == 0.0 and stats["kl"] == 0.0

    ref = torch.log(torch.tensor([[0.25, 0.75]]))  # d = ref - logp = -log 2, log 1.5
    k3 = [0.5 + math.log(2) - 1, 1.5 - math.log(1.5) - 1]
    assert all(k > 0 for k in k3)
    lp = logp.clone().requires_grad_()
    loss, stats = grpo_loss(lp, logp, zero_adv, mask, beta=0.5, ref_logp=ref, loss_type="dr_grpo",
                            max_completion_length=2)
    assert stats["kl"] == pytest.approx(sum(k3) / 2)
    assert loss.item() == pytest.approx(0.5 * sum(k3) / 2)
    loss.backward()  # d k3 / d logp = 1 - exp(ref - logp): pulls logp towards ref
    torch.testing.assert_close(lp.grad, 0.5 * (1 - torch.tensor([[0.5, 1.5]])) / 2)
    # the penalty adds to the policy term: loss = -A (each sequence's mean) + beta * mean k3
    loss, _ = grpo_loss(logp, logp, torch.ones(1), mask, beta=0.5, ref_logp=ref, loss_type="grpo")
    assert loss.item() == pytest.approx(-1 + 0.5 * sum(k3) / 2)


def test_beta_without_reference_is_an_error():
    logp = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="ref_logp"):
        grpo_loss(logp, logp, torch.ones(1), torch.ones(1, 2, dtype=torch.bool), beta=0.1)


def test_grpo_vs_dr_grpo_weights_and_length_bias():
    """Lengths 2 and 4, A = -1 each, max_completion_length 6. grpo: mean per sequence, then over
    sequences, so each token of the long one gets half the gradient of the short one's (the length
    bias); dr_grpo: sum / (2 * 6), the same gradient for every token."""
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    adv = torch.tensor([-1.0, -1.0])
    grads = {}
    for loss_type, expected_loss in (("grpo", (1.0 + 1.0) / 2), ("dr_grpo", (2 + 4) / (2 * 6))):
        logp = torch.full((2, 4), -1.0, requires_grad=True)
        loss, _ = grpo_loss(logp, logp.detach(), adv, mask, loss_type=loss_type, max_completion_length=6)
        assert loss.item() == pytest.approx(expected_loss)
        loss.backward()
        grads[loss_type] = logp.grad
    g = grads["grpo"]
    torch.testing.assert_close(g, torch.tensor([[1 / (2 * 2)] * 2 + [0.0] * 2, [1 / (4 * 2)] * 4]))
    assert g[1, 0].abs() < g[0, 0].abs()  # the long wrong answer is punished less per token
    d = grads["dr_grpo"]
    torch.testing.assert_close(d, mask.float() / 12)
    assert d[1, 0] == d[0, 0]

    # with unequal advantages the hand weights still hold
    adv = torch.tensor([2.0, -1.0])
    logp = torch.zeros(2, 4)
    loss, _ = grpo_loss(logp, logp, adv, mask, loss_type="grpo")
    assert loss.item() == pytest.approx((-2.0 + 1.0) / 2)
    loss, _ = grpo_loss(logp, logp, adv, mask, loss_type="dr_grpo", max_completion_length=6)
    assert loss.item() == pytest.approx((-2.0 * 2 + 1.0 * 4) / 12)


# ----------------------------------------------------------------------------- token_logprobs

def test_token_logprobs_equal_plain_forward_despite_left_padding(tiny_model, tok):
    """Each row's log-probs and entropies are those of one unpadded forward pass (any temperature)."""
    prompts = [tok.encode(p, allowed_special="all") for p in ("<|bos|>Q:7+5=?", "<|bos|>Q:1+2-3+4-5=?")]
    torch.manual_seed(0)
    ids = torch.randint(0, tok.vocab_size, (2, 6))
    prompt_ids, prompt_mask = left_pad(prompts, tok.pad_id, "cpu")
    assert not prompt_mask[0].all()  # row 0 really is padded
    for temperature in (1.0, 0.7):
        logp, entropy = token_logprobs(tiny_model, prompt_ids, prompt_mask, ids, temperature)
        assert logp.shape == entropy.shape == (2, 6)
        for i, p in enumerate(prompts):
            seq = torch.tensor(p + ids[i].tolist())[None]
            logits = tiny_model(seq).logits[0, len(p) - 1:-1] / temperature  # predicts ids[i]
            ref = logits.log_softmax(-1)
            torch.testing.assert_close(logp[i], ref.gather(-1, ids[i, :, None]).squeeze(-1), atol=1e-5, rtol=0)
            torch.testing.assert_close(entropy[i], -(ref.exp() * ref).sum(-1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_logprobs_match_generate(tiny_model, tok, temperature):
    """Re-scoring sampled tokens gives the log-probs generate reported while sampling them."""
    out = generate(tiny_model, tok, ["<|bos|>Q:7+5=?", "<|bos|>Q:1+2-3=?", "<|bos|>Q:9=?"], 12,
                   temperature=temperature, seed=3)
    logp, _ = token_logprobs(tiny_model, out.prompt_ids, out.prompt_mask, out.ids, temperature)
    assert out.mask.sum() > 3
    torch.testing.assert_close(logp[out.mask], out.logprobs[out.mask], atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- config

@pytest.mark.parametrize("kw, field", [
    (dict(loss_type="ppo"), "loss_type"), (dict(scale_rewards="batch"), "scale_rewards"),
    (dict(num_generations=1), "num_generations"), (dict(beta=-0.1), "beta"),
    (dict(beta=float("nan")), "beta"), (dict(steps=0), "steps"), (dict(epsilon=0.0), "epsilon"),
    (dict(temperature=0.0), "temperature"), (dict(learning_rate=0.0), "learning_rate"),
])
def test_config_validation_names_the_field(kw, field):
    with pytest.raises(ValueError, match=f"GRPOConfig.{field}"):
        GRPOConfig(**kw)


# ----------------------------------------------------------------------------- the trainer

RECORD_KEYS = {"step", "reward", "reward_std", "accuracy", "format", "completions/mean_length",
               "completions/clipped_ratio", "clip_ratio", "kl", "entropy", "frac_reward_zero_std",
               "think_length", "samples", "loss", "grad_norm"}


def test_one_step_updates_the_model_and_logs_trl_metrics(pretrained, tok):
    """One step with reward spread moves the weights; the record carries TRL's metric names."""
    model = copy.deepcopy(pretrained)
    before = params(model)
    result = grpo_train(model, tok, TOY_TASK, rl_config(log_completions=3), progress=False)
    (rec,) = result.history
    assert RECORD_KEYS <= rec.keys()
    assert rec["step"] == 1
    assert rec["reward_std"] > 0 and rec["frac_reward_zero_std"] < 1  # some group had spread
    assert rec["reward"] == pytest.approx(0.1 * rec["format"])  # format_only pays 0.1 per kept format
    assert 0 <= rec["accuracy"] <= rec["format"] <= 1
    assert 0 <= rec["completions/clipped_ratio"] <= 1 and rec["completions/mean_length"] > 0
    assert rec["clip_ratio"] == 0.0 and rec["kl"] == 0.0  # one iteration, beta 0
    assert rec["entropy"] > 0 and rec["loss"] != 0.0
    assert len(rec["samples"]) == 3 and {"prompt", "completion", "reward"} <= rec["samples"][0].keys()
    moved = changed(before, model)
    assert "head.weight" in moved and len(moved) > len(before) // 2


def test_format_reward_rises_on_a_toy_task(pretrained, tok):
    """Rewarding the format alone, 20 steps raise the format rate from about half to most samples.
    Checked on 3 pretraining x 4 RL seeds: the last 3 steps beat the first 3 by 23-44 points of
    format rate; with learning_rate 1e-7 (no learning) the two differ by at most 8 points."""
    model = copy.deepcopy(pretrained)
    history = grpo_train(model, tok, TOY_TASK, rl_config(steps=20), progress=False).history
    reward = [h["reward"] for h in history]
    first, last = sum(reward[:3]) / 3, sum(reward[-3:]) / 3
    assert last > first + 0.1 * 0.15, reward  # +15 points of format rate (reward is 0.1 * format)
    assert sum(h["format"] for h in history[-3:]) / 3 >= 0.8


def test_interrupt_and_resume_equals_uninterrupted_run(pretrained, tok, tmp_path):
    """Ctrl-C after step 2 saves; resuming (KL reference included) reproduces a straight run exactly."""
    config = rl_config(steps=4, beta=0.05, eval_every=2, eval_size=4, checkpoint_every=100,
                       max_completion_length=16)
    straight = grpo_train(copy.deepcopy(pretrained), tok, TOY_TASK, config, progress=False)
    assert len(straight.history) == 4 and not straight.interrupted

    def ctrl_c_after_2(record):
        if record["step"] == 2:
            raise KeyboardInterrupt

    ckpt = tmp_path / "grpo.pt"
    first = grpo_train(copy.deepcopy(pretrained), tok, TOY_TASK, config, checkpoint=ckpt,
                       callback=ctrl_c_after_2, progress=False)
    assert first.interrupted and len(first.history) == 2
    # a differently initialised model: everything must come from the checkpoint
    torch.manual_seed(99)
    fresh = Transformer(pretrained.config)
    resumed = grpo_train(fresh, tok, TOY_TASK, config, checkpoint=ckpt, progress=False)
    assert not resumed.interrupted
    assert [h["step"] for h in resumed.history] == [1, 2, 3, 4]
    for key in ("reward", "kl", "loss", "eval/greedy_accuracy"):
        assert [h.get(key) for h in resumed.history] == [h.get(key) for h in straight.history], key
    assert any(h["kl"] > 0 for h in straight.history[1:])  # the reference really was used
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_masked_truncated_completions_contribute_nothing(pretrained, tok, monkeypatch):
    """max_completion_length 1 truncates everything (the first token is always <think>); with mask_truncated_completions the loss is 0
    and no weight moves, even though (forced) rewards spread. Without it, the same batch trains."""
    def spread_scores(texts, golds, config, format_only=False):
        r = [float(i % 2) for i in range(len(texts))]
        return {"reward": r, "accuracy": [0.0] * len(texts), "format": [0.0] * len(texts)}

    monkeypatch.setattr(grpo_mod, "score_batch", spread_scores)
    for mask_truncated in (True, False):
        model = copy.deepcopy(pretrained)
        before = params(model)
        config = rl_config(max_completion_length=1, mask_truncated_completions=mask_truncated)
        (rec,) = grpo_train(model, tok, TOY_TASK, config, progress=False).history
        assert rec["completions/clipped_ratio"] == 1.0
        if mask_truncated:
            assert rec["loss"] == 0.0 and rec["grad_norm"] == 0.0
            assert changed(before, model) == []
        else:
            assert rec["grad_norm"] > 0 and changed(before, model)


# ----------------------------------------------------------------------------- degenerate inputs, no NaN

@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_rewards_are_refused(bad):
    with pytest.raises(ValueError, match="rewards must be finite.*position 2"):
        group_advantages(torch.tensor([1.0, 0.0, bad, 0.0]), 2, "group")


def test_non_finite_reward_in_training_names_the_completion(pretrained, tok, monkeypatch):
    def nan_scores(texts, golds, config, format_only=False):
        return {"reward": [math.nan] + [0.0] * (len(texts) - 1), "accuracy": [0.0] * len(texts),
                "format": [0.0] * len(texts)}
    monkeypatch.setattr(grpo_mod, "score_batch", nan_scores)
    before = params(pretrained)
    with pytest.raises(ValueError, match=r"step 1: the reward of completion '.*' \(prompt '<\|bos\|>Q:.*'\) is nan"):
        grpo_train(copy.deepcopy(pretrained), tok, TOY_TASK, rl_config(), progress=False)
    assert changed(before, pretrained) == []


def test_one_sample_groups_give_zero_advantage_not_nan():
    adv = group_advantages(torch.tensor([3.0, 1.0, 2.0]), 1, "group")
    assert torch.equal(adv, torch.zeros(3))
    with pytest.raises(ValueError, match="num_generations"):
        group_advantages(torch.tensor([3.0, 1.0, 2.0]), 2)


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo"])
def test_empty_completions_give_zero_loss_not_nan(loss_type):
    logp = torch.randn(4, 5, requires_grad=True)
    mask = torch.zeros(4, 5, dtype=torch.bool)  # every completion empty
    loss, stats = grpo_loss(logp, logp.detach(), torch.tensor([1.0, -1.0, 0.5, -0.5]), mask, loss_type=loss_type)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(logp.grad).all() and stats["clip_ratio"] == 0.0
