"""widgets/hanzi.py: Chinese characters assembled from UTF-8 bytes by byte-level BPE, merge by merge."""

import pytest

import widgets
from minids.tokenizer import default_tokenizer
from widgets.hanzi import (HanziAssembly, assembly_steps, char_bytes, chars_per_token_curve,
                           chars_per_token_figure, token_spans, vocab_effect)


@pytest.fixture(scope="module")
def tok1024():
    return default_tokenizer(1024)


def test_char_bytes():
    assert char_bytes("学a") == [("学", [0xE5, 0xAD, 0xA6]), ("a", [0x61])]


def test_spans_kinds_by_hand(tok1024):
    text = "学习"
    raw = tok1024.encode_with_merges(text, 0)
    assert [s.kind for s in token_spans(tok1024, raw, text)] == ["bytes"] * 6
    full = token_spans(tok1024, tok1024.encode(text), text)
    assert [(s.kind, s.chars) for s in full] == [("word", "学习")]
    assert [(s.start, s.end) for s in token_spans(tok1024, raw, text)][:3] == [(0, 1), (1, 2), (2, 3)]
    with pytest.raises(ValueError):
        token_spans(tok1024, raw[:-1], text)


def test_a_merge_can_cross_a_character_boundary():
    tok = default_tokenizer(2048)
    spans = token_spans(tok, tok.encode("一门"), "一门")
    assert "mixed" in [s.kind for s in spans]
    assert tok.decode([s.id for s in spans]) == "一门"


def test_assembly_steps_merge_by_merge(tok1024):
    text = "学习语言"
    steps = assembly_steps(tok1024, text)
    assert steps[0].n == 0 and steps[0].merge is None and len(steps[0].spans) == len(text.encode("utf-8"))
    assert [s.id for s in steps[-1].spans] == tok1024.encode(text)
    counts = [len(s.spans) for s in steps]
    assert counts == sorted(counts, reverse=True) and len(set(counts)) == len(counts)  # each step joins tokens
    for step in steps[1:]:
        assert step.merge.new_id in [s.id for s in step.spans]          # the merge that changed it is used
        assert b"".join(tok1024.vocab[s.id] for s in step.spans) == text.encode("utf-8")
    kinds = [[s.kind for s in step.spans] for step in steps]
    # bytes first, then a whole character, then a word of two characters
    first_char = next(i for i, k in enumerate(kinds) if "char" in k)
    first_word = next(i for i, k in enumerate(kinds) if "word" in k)
    assert 0 < first_char < first_word


def test_assembly_steps_bad_input(tok1024):
    with pytest.raises(ValueError):
        assembly_steps(tok1024, "   ")


def test_chars_per_token_curve():
    curve = chars_per_token_curve((263, 512, 1024))
    # no merges: a Chinese character is three tokens (a few punctuation marks and newlines are one)
    assert 0.33 < curve["Chinese"][0] < 0.36
    assert curve["English"][0] == pytest.approx(1.0, abs=0.01)
    for name in ("English", "Chinese"):
        assert curve[name] == sorted(curve[name])
    fig = chars_per_token_figure(curve)
    assert [tr.name for tr in fig.data] == ["English", "Chinese"] and list(fig.data[1].y) == curve["Chinese"]
    with pytest.raises(ValueError, match="start at 263"):
        chars_per_token_curve((100, 512))


def test_vocab_effect_on_chinese():
    rows = vocab_effect("学习一门新的语言", sizes=(263, 512, 1024))
    assert rows[0]["tokens"] == 3 * 8 and rows[0]["tokens_per_char"] == 3.0 and rows[0]["partial_share"] == 1.0
    assert [r["tokens"] for r in rows] == sorted((r["tokens"] for r in rows), reverse=True)
    assert rows[-1]["partial_share"] < rows[0]["partial_share"]


def test_widget_slider_and_bad_input(tok1024):
    w = HanziAssembly(tok1024, text="学习")
    assert w.step.max == len(w.steps) - 1 > 0
    before = w.view.value
    w.step.value = w.step.max
    assert w.view.value != before and "学习" in w.view.value
    w.text.value = ""
    assert "Type some text" in w.bytes.value


def test_widget_speaks_chinese(tok1024):
    widgets.set_language("zh")
    try:
        w = HanziAssembly(tok1024, text="学习")
        assert w.step.description == "步骤" and "第 0 步" in w.view.value and "汉字的一部分" in w.children[2].value
        assert chars_per_token_figure(chars_per_token_curve((263, 512))).layout.title.text == "每词元字符数与词表大小"
    finally:
        widgets.set_language("en")
