"""The MLA notebook's widget and pictures: cache sizes by layout, the latent's rank, the RoPE argument."""

import dataclasses

import plotly.graph_objects as go
import pytest
import torch

import widgets.mla as wm
from minids.mla import matched_mla_config
from minids.model import Transformer
from minids.mtp import SpeculativeResult, acceptance_by_position


def test_v3_cache_rows_by_hand():
    """V3 in bf16: MHA 61*2*128*128*2 bytes per token; MLA 61*576*2, 56.9x fewer."""
    rows = {r["kind"]: r for r in wm.cache_rows(wm.V3, context=1000, batch=2)}
    assert rows["mha"]["bytes_per_token"] == 61 * 2 * 128 * 128 * 2
    assert rows["mla"]["numbers_per_token"] == 61 * (512 + 64)
    assert rows["gqa"]["numbers_per_token"] == 61 * 2 * 8 * 128
    assert rows["mqa"]["numbers_per_token"] == 61 * 2 * 128
    assert rows["mla"]["bytes"] == rows["mla"]["bytes_per_token"] * 2000
    assert rows["mla"]["vs_mha"] == pytest.approx(32768 / 576)


def test_shape_of_a_minids_config_matches_the_model(tiny_config):
    mla = matched_mla_config(tiny_config)
    shape = wm.CacheShape.of(tiny_config, mla)
    rows = {r["kind"]: r for r in wm.cache_rows(shape)}
    assert rows["mha"]["bytes_per_token"] == Transformer(tiny_config).kv_cache_bytes_per_token()
    assert rows["mla"]["bytes_per_token"] == Transformer(mla).kv_cache_bytes_per_token()


def test_human_bytes():
    assert wm.human_bytes(512) == "512 B"
    assert wm.human_bytes(1536) == "1.5 KB"
    assert wm.human_bytes(3 * 1024 ** 3) == "3.0 GB"


def test_mla_spectrum_is_cut_at_the_latent_rank(tiny_config, tok):
    """MLA's re-expanded keys and values of a long sequence span at most kv_lora_rank directions."""
    torch.manual_seed(0)
    mla = dataclasses.replace(tiny_config, attention="mla", kv_lora_rank=6, qk_nope_head_dim=16,
                              qk_rope_head_dim=4, v_head_dim=16)
    ids = torch.randint(3, tok.vocab_size, (60,)).tolist()
    s_mla = wm.kv_spectrum(Transformer(mla).eval(), ids)
    s_mha = wm.kv_spectrum(Transformer(tiny_config).eval(), ids)
    assert len(s_mla) == min(60, 2 * 16 * 2) and s_mla[0] == 1
    assert s_mla[6:].max() < 1e-5 < s_mla[5]
    assert s_mha[6:].max() > 1e-3  # plain keys and values are not confined to 6 directions
    assert isinstance(wm.spectrum_figure({"MLA": s_mla, "MHA": s_mha}, {"kv_lora_rank": 6}), go.Figure)


def test_absorbing_breaks_under_rope_but_not_decoupled():
    err = wm.absorbed_rope_error(max_offset=16, head_dim=16, rank=8)
    assert err["rope_on_absorbed"][0] < 1e-5 and max(err["decoupled"]) < 1e-5
    assert min(err["rope_on_absorbed"][4:]) > 0.1
    assert len(wm.rope_error_figure(err).data) == 2


def test_loss_and_acceptance_figures():
    hist = [{"step": i + 1, "loss": 5.0 - i * 0.1} for i in range(30)]
    fig = wm.loss_curves_figure({"MHA": hist, "MLA": hist[:10]}, window=5)
    assert [t.name for t in fig.data] == ["MHA", "MLA"] and len(fig.data[0].y) == 30
    assert fig.data[0].y[0] == pytest.approx(5.0) and fig.data[0].y[-1] == pytest.approx(2.3)
    results = [SpeculativeResult(ids=[1, 2, 3, 4], text="", accepted=[True, False], draft_positions=[1, 3]),
               SpeculativeResult(ids=[1, 2], text="", accepted=[False], draft_positions=[1])]
    positions, rate, counts = acceptance_by_position(results)
    assert positions == [1, 3] and rate == [0.5, 0.0] and counts == [2, 1]
    assert list(wm.acceptance_figure(positions, rate, counts).data[0].y) == [0.5, 0.0]


def test_explorer_redraws_on_the_slider(shown_by, tiny_config):
    shown = shown_by(wm)
    shapes = [wm.CacheShape.of(tiny_config, matched_mla_config(tiny_config)), wm.V3]
    w = wm.CacheExplorer(shapes, context=1024)
    first = w.summary.value
    assert "DeepSeek-V3" in first and "1,024 tokens" in first and len(shown) == 1
    y0 = list(w.figure.data[0].y)
    w.context.value = 2048
    assert w.summary.value != first and "2,048" in w.summary.value and len(shown) == 2
    assert list(w.figure.data[0].y) == [2 * y for y in y0]  # the cache grows linearly with the context
    w.batch.value = 4
    assert list(w.figure.data[-1].y) == [8 * y for y in [r for r in
                                                          [wm.cache_rows(s, 1024)[-1]["bytes"] for s in shapes]]]
