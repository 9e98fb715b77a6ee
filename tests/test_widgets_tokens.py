"""The tokenizer playground: compute functions, figures, and the wiring driven headless."""

import plotly.graph_objects as go
import pytest

from minids.tokenizer import SPECIAL_TOKENS, default_tokenizer
from widgets.tokens import (VOCAB_SIZES, TokenizerPlayground, bytes_per_token, compression_curve,
                            compression_figure, corpus_parts, corpus_text, digit_pair_counts, merge_description,
                            replay, token_colors, token_strip, tokenize)


def test_tokenize_pieces_join_back_and_bytes_per_token(tok):
    ids, pieces = tokenize(tok, "The cat sat on the mat.")
    assert ids == tok.encode("The cat sat on the mat.")
    assert "".join(pieces) == "The cat sat on the mat."
    assert bytes_per_token("héllo", 2) == 3.0  # 'é' is two bytes: 6 bytes / 2 tokens


def test_tokenize_digits_one_per_token_and_emoji_byte_fallback(tok):
    _, pieces = tokenize(tok, "1234+5678")
    assert pieces == list("1234+5678")
    _, pieces = tokenize(tok, "🙂")
    assert pieces == ["<0xF0>", "<0x9F>", "<0x99>", "<0x82>"]  # U+1F642 in UTF-8, never seen in training


@pytest.mark.parametrize("text, fragment", [("", "Type some text"), ("   ", "Type some text"),
                                            ("a\ud800b", "surrogate"), ("ab " * 3000, "tokens")])
def test_tokenize_bad_text_raises_readable_message(tok, text, fragment):
    with pytest.raises(ValueError, match=fragment):
        tokenize(tok, text)


def test_merge_description_names_pair_piece_and_count(tok):
    m = tok.merges[4]
    a, b = (tok.pieces([i])[0] for i in m.pair)
    text = merge_description(tok, 5)
    assert text.startswith(f"merge 5 of {len(tok.merges)}: ")
    assert f"'{a.replace(' ', '·')}' + '{b.replace(' ', '·')}'" in text
    assert f"seen {m.count} times" in text and f"id {m.new_id}" in text
    assert "no merges" in merge_description(tok, 0)
    with pytest.raises(ValueError):
        merge_description(tok, len(tok.merges) + 1)


def test_replay_goes_from_bytes_to_full_encoding(tok):
    text = "the weather"
    ids0, pieces0 = replay(tok, text, 0)
    assert ids0 == list(text.encode())
    assert replay(tok, text, len(tok.merges))[0] == tok.encode(text)
    lengths = [len(replay(tok, text, n)[0]) for n in range(len(tok.merges) + 1)]
    assert all(a >= b for a, b in zip(lengths, lengths[1:]))  # more merges never add tokens
    assert lengths[-1] < lengths[0]


def test_merge_prefix_equals_smaller_training():
    # the fact compression_curve relies on: greedy training makes smaller vocabularies a prefix
    assert default_tokenizer(1024).merges[: len(default_tokenizer(300).merges)] == default_tokenizer(300).merges


def test_corpus_parts_cover_every_paragraph():
    parts = corpus_parts()
    assert set(parts) == {"English", "Chinese", "arithmetic"}
    n_paragraphs = sum(1 for p in corpus_text().split("\n") if p.strip())
    assert sum(len(v.split("\n")) for v in parts.values()) == n_paragraphs
    assert "的" in parts["Chinese"] and "kettle" in parts["English"] and "<think>" in parts["arithmetic"]


def test_compression_curve_numbers():
    curve = compression_curve()
    assert curve["vocab_size"] == list(VOCAB_SIZES)
    assert curve["all"][0] == 1.0  # no merges: one byte per token
    assert all(a < b for a, b in zip(curve["all"], curve["all"][1:]))  # more merges, fewer tokens
    tok = default_tokenizer(512)
    text = corpus_text()
    assert curve["all"][VOCAB_SIZES.index(512)] == pytest.approx(len(text.encode()) / len(tok.encode(text)))
    curve["all"][0] = 99.0  # callers get a copy; the cache is untouched
    assert compression_curve()["all"][0] == 1.0
    with pytest.raises(ValueError):
        compression_curve((100, 512))


def test_compression_figure_has_a_line_per_part():
    fig = compression_figure(compression_curve())
    assert isinstance(fig, go.Figure)
    assert [t.name for t in fig.data] == ["all", "English", "Chinese", "arithmetic"]
    assert list(fig.data[0].x) == list(VOCAB_SIZES)


def test_digit_pairs_are_counted_but_never_merged(tok):
    pairs = dict(digit_pair_counts("12 123 x9"))
    assert pairs == {"12": 2, "23": 1}
    assert digit_pair_counts()[0][1] > 0  # the corpus has multi-digit numbers
    assert not any(set(tok.vocab[m.new_id]) & set(b"0123456789") for m in tok.merges)  # no merged token holds a digit


def test_token_strip_colours_by_id_with_id_titles(tok):
    ids, pieces = tokenize(tok, "at cat at")
    html = token_strip(ids, pieces)
    assert html.count("<span") == len(ids)
    for i in ids:
        assert f'title="id {i}"' in html
    colors = token_colors(ids)
    assert colors[ids.index(ids[-1])] == colors[-1]  # the same token gets the same colour


def test_playground_shows_tokens_and_stats(tok):
    w = TokenizerPlayground(tok, text="The cat sat.")
    ids = tok.encode("The cat sat.")
    assert f"{len(ids)} tokens for 12 bytes" in w.stats.value
    assert w.ids.value.count(" ") >= len(ids) - 1 and str(ids[0]) in w.ids.value
    assert w.tokens.value.count("<span") == len(ids)
    w.text.value = "<think>"  # special tokens are recognised in the playground
    assert f"id {tok.special_tokens['<think>']}" in w.tokens.value


def test_playground_bad_text_shows_message_not_traceback(tok):
    w = TokenizerPlayground(tok, text="fine")
    w.text.value = ""
    assert "minids-message" in w.stats.value and "Type some text" in w.stats.value
    assert w.tokens.value == "" and w.replayed.value == ""
    w.merges.value = 3  # moving the slider with bad text must not raise
    assert "merge 3" in w.caption.value


def test_playground_slider_changes_caption_and_replay(tok):
    w = TokenizerPlayground(tok, text="the weather", n_merges=0)
    assert "no merges" in w.caption.value
    assert w.replayed.value.count("<span") == len("the weather")
    w.merges.value = 1
    first = w.caption.value
    assert first.startswith("merge 1 of")
    w.merges.value = 2
    assert w.caption.value != first and w.caption.value.startswith("merge 2 of")
    w.merges.value = w.merges.max
    assert w.replayed.value.count("<span") == len(tok.encode("the weather"))
    assert len(SPECIAL_TOKENS) + 256 + w.merges.max == tok.vocab_size
