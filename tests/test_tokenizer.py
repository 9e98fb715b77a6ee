import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minids.tokenizer import (
    FORMAT_VERSION,
    SPECIAL_TOKENS,
    Merge,
    Tokenizer,
    _SPLIT_RE,
    default_tokenizer,
)


@pytest.fixture(scope="module")
def tok():
    return default_tokenizer()


# Any str that UTF-8 can encode: everything except lone surrogates.
valid_text = st.text(st.characters(blacklist_categories=("Cs",)))


# ---- the worked example from the module docstring -----------------------------


def test_hand_worked_example():
    text = "aaabdaaabac"
    t = Tokenizer().train(text, vocab_size=256 + len(SPECIAL_TOKENS) + 3)
    # 1: (a,a) occurs 4 times (overlapping inside "aaa").
    # 2: after "aa a b d aa a b a c", (aa,a) and (a,b) tie at 2; smaller ids win.
    # 3: "aa ab d aa ab a c" -> (aa,ab) occurs twice.
    assert t.merges == [
        Merge((97, 97), 256, 4),
        Merge((97, 98), 257, 2),
        Merge((256, 257), 258, 2),
    ]
    assert t.vocab[256] == b"aa" and t.vocab[257] == b"ab" and t.vocab[258] == b"aaab"
    assert t.encode(text) == [258, 100, 258, 97, 99]
    assert t.pieces(t.encode(text)) == ["aaab", "d", "aaab", "a", "c"]
    assert t.vocab_size == 266
    assert t.special_tokens["<|bos|>"] == 259 and t.pad_id == 261


def test_training_is_deterministic():
    text = "the cat sat on the mat; the bat sat on the hat"
    a = Tokenizer().train(text, 280)
    b = Tokenizer().train(text, 280)
    assert a.merges == b.merges


def test_training_stops_when_pairs_run_out():
    t = Tokenizer().train("ab", 400)
    assert t.merges == [Merge((97, 98), 256, 1)]
    assert t.vocab_size == 256 + 1 + len(SPECIAL_TOKENS)


def test_vocab_size_too_small():
    with pytest.raises(ValueError, match="vocab_size"):
        Tokenizer().train("hello", 256 + len(SPECIAL_TOKENS) - 1)


def test_untrained_tokenizer_is_bytes():
    t = Tokenizer()
    assert t.vocab_size == 256 + len(SPECIAL_TOKENS)
    assert t.encode("hé") == list("hé".encode())
    assert t.decode(t.encode("hé")) == "hé"


# ---- round trips -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["", "👋🏽", "深度求索的模型很小。", "e\u0301", "\x00\x07\n\t", "  x  \n\n y\r\n",
     "unbelievable 你好 👋🏽 1+2=3\x00 <think>ok</think>", "snake_case __init__"],
)
def test_round_trip_explicit(tok, text):
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=300, deadline=None)
@given(valid_text)
def test_round_trip_any_text(tok, text):
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=200, deadline=None)
@given(valid_text)
def test_split_pattern_covers_every_character(text):
    # If the regex skipped a character, encode would silently drop it.
    assert "".join(_SPLIT_RE.findall(text)) == text


def test_unpaired_surrogate(tok):
    with pytest.raises(ValueError, match=r"unpaired surrogate .* position 3"):
        tok.encode("abc\ud800def")
    with pytest.raises(ValueError, match="surrogate"):
        Tokenizer().train("x\udfffy", 300)


def test_decode_out_of_range(tok):
    with pytest.raises(ValueError, match=r"token id 512 .*vocab size 512"):
        tok.decode([1, 512])
    with pytest.raises(ValueError, match="-1"):
        tok.decode([-1])


def test_decode_invalid_utf8_is_replaced(tok):
    assert tok.decode([0xE4, ord("a")]) == "\ufffda"


def test_pieces_show_partial_bytes():
    t = Tokenizer()
    assert t.pieces(t.encode("a你")) == ["a", "<0xE4>", "<0xBD>", "<0xA0>"]
    assert t.pieces([t.eos_id]) == ["<|eos|>"]


# ---- special tokens ----------------------------------------------------------------


def test_special_ids_come_last(tok):
    n = 256 + len(tok.merges)
    assert tok.special_tokens == {s: n + i for i, s in enumerate(SPECIAL_TOKENS)}
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (n, n + 1, n + 2)
    assert not set(tok.vocab) & set(tok.special_tokens.values())


def test_special_tokens_not_forgeable_by_default(tok):
    text = "<|bos|>hi<think>"
    ids = tok.encode(text)
    assert not set(ids) & set(tok.special_tokens.values())
    assert tok.decode(ids) == text


def test_special_tokens_allowed(tok):
    sp = tok.special_tokens
    text = "<|bos|>Q:1+2=?<think>1+2=3</think><answer>3</answer><|eos|>"
    ids = tok.encode(text, allowed_special="all")
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    for s in SPECIAL_TOKENS:
        if s != "<|pad|>":
            assert ids.count(sp[s]) == 1  # one id each, never split into pieces
    assert tok.decode(ids) == text
    # only the named ones are recognised
    ids = tok.encode("<think><answer>", allowed_special={"<answer>"})
    assert ids[-1] == sp["<answer>"] and sp["<think>"] not in ids
    with pytest.raises(ValueError, match="not special"):
        tok.encode("x", allowed_special={"<nope>"})


def test_special_tokens_glued_to_text(tok):
    ids = tok.encode("a<think>b", allowed_special="all")
    assert tok.pieces(ids) == ["a", "<think>", "b"]


# ---- digits ----------------------------------------------------------------------------


def test_every_digit_is_its_own_token(tok):
    text = "12345+678=13023"
    ids = tok.encode(text)
    assert tok.pieces(ids) == list(text)
    digit_ids = [i for i in ids if tok.vocab[i].isdigit()]
    assert digit_ids == [ord(c) for c in text if c.isdigit()]
    assert tok.pieces(tok.encode(" 2024 years"))[:5] == [" ", "2", "0", "2", "4"]


def test_no_merge_contains_a_digit(tok):
    assert not any(re.search(rb"\d", tok.vocab[m.new_id]) for m in tok.merges)


# ---- merge replay ---------------------------------------------------------------------


def test_encode_with_merges(tok):
    text = "unbelievably fast 你好 42"
    assert tok.encode_with_merges(text, 0) == list(text.encode("utf-8"))
    assert tok.encode_with_merges(text, len(tok.merges)) == tok.encode(text)
    lengths = [len(tok.encode_with_merges(text, n)) for n in range(0, len(tok.merges) + 1, 32)]
    assert lengths == sorted(lengths, reverse=True)  # more merges never make it longer
    for n in (1, 50, 200):
        assert tok.decode(tok.encode_with_merges(text, n)) == text
    with pytest.raises(ValueError, match="n_merges"):
        tok.encode_with_merges(text, len(tok.merges) + 1)


def test_encode_with_merges_matches_a_smaller_training_run():
    text = default_corpus_text()
    small = Tokenizer().train(text, 256 + len(SPECIAL_TOKENS) + 40)
    big = default_tokenizer()
    assert big.merges[:40] == small.merges
    sample = "The believer and the unbeliever 学习"
    assert big.encode_with_merges(sample, 40) == small.encode(sample)


def default_corpus_text():
    from importlib import resources

    return resources.files("minids.data").joinpath("corpus.txt").read_text(encoding="utf-8")


# ---- saving and loading ----------------------------------------------------------------


def test_save_load_round_trip(tok, tmp_path):
    path = tmp_path / "tok.json"
    tok.save(path)
    loaded = Tokenizer.load(path)
    assert loaded.merges == tok.merges
    assert loaded.special_tokens == tok.special_tokens
    text = "Unbelievably, 7+5=12. 你好！<think>"
    assert loaded.encode(text, allowed_special="all") == tok.encode(text, allowed_special="all")
    # human readable: indented, merges as objects
    raw = path.read_text(encoding="utf-8")
    assert "\n" in raw
    first = json.loads(raw)["merges"][0]
    assert set(first) >= {"pair", "new_id", "count"}


def test_dict_round_trip_is_json(tok):
    d = json.loads(json.dumps(tok.to_dict()))
    assert Tokenizer.from_dict(d).merges == tok.merges


def _write_and_load(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError) as info:
        Tokenizer.load(path)
    msg = str(info.value)
    assert str(path) in msg
    return msg


def test_load_rejects_bad_files(tok, tmp_path):
    good = json.dumps(tok.to_dict(), indent=1)

    assert "Expecting" in _write_and_load(tmp_path, "not json at all")
    assert _write_and_load(tmp_path, good[: len(good) // 2])  # truncated

    d = tok.to_dict()
    d["format_version"] = FORMAT_VERSION + 1
    assert "format_version" in _write_and_load(tmp_path, json.dumps(d))

    d = tok.to_dict()
    del d["merges"]
    assert "missing keys" in _write_and_load(tmp_path, json.dumps(d))

    d = tok.to_dict()
    d["merges"][0], d["merges"][1] = d["merges"][1], d["merges"][0]
    assert "new_id" in _write_and_load(tmp_path, json.dumps(d))

    d = tok.to_dict()
    d["merges"][3]["pair"] = [0, 9999]
    assert "9999" in _write_and_load(tmp_path, json.dumps(d))

    d = tok.to_dict()
    d["merges"][3]["pair"] = "ab"
    assert "malformed" in _write_and_load(tmp_path, json.dumps(d))

    assert "JSON object" in _write_and_load(tmp_path, "[1, 2, 3]")


# ---- the bundled default ---------------------------------------------------------------


def test_default_tokenizer(tok):
    assert tok.vocab_size == 512
    assert default_tokenizer() is tok  # cached
    text = default_corpus_text()
    assert 20_000 <= len(text.encode("utf-8")) <= 40_000
    assert len(tok.encode(text)) < 0.7 * len(text.encode("utf-8"))
    assert len(tok.encode("unbelievable")) < 12
