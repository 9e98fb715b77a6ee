"""A byte-level BPE tokenizer, small enough to read in one sitting.

A language model reads integers, not text. This module turns text into a list
of token ids and back, the way GPT-style models do:

1. Encode the text as UTF-8 bytes. Every string becomes a sequence of the 256
   possible byte values, so nothing is ever "out of vocabulary".
2. Training repeatedly finds the most frequent *pair* of adjacent tokens and
   gives that pair a new id (a "merge"). Frequent words end up as one token;
   rare words are spelled from smaller pieces.
3. Encoding replays the learned merges, earliest first; decoding concatenates
   the bytes of each id.

A worked example. Train on "aaabdaaabac" with three merges:

    start        a a a b d a a a b a c      (ids 97 97 97 98 100 ...)
    merge 1      (a, a) occurs 4 times, more than any other pair
                 -> new id 256 = "aa":     aa a b d aa a b a c
    merge 2      (aa, a) and (a, b) both occur twice; ties go to the pair
                 with the smaller ids, so (97, 98) -> 257 = "ab":
                                           aa ab d aa ab a c
    merge 3      (aa, ab) occurs twice -> 258 = "aaab":
                                           aaab d aaab a c

Eleven bytes became five tokens. Note that "aaa" holds the pair (a, a) twice,
overlapping, and both are counted; merging then goes left to right, turning
"aaa" into "aa a". Because ties are broken by the ids themselves, training is
deterministic.

Chunks. Before training or encoding, text is cut into chunks by the regex
SPLIT_PATTERN (words with their leading space, runs of punctuation, runs of
whitespace), and merges never cross a chunk boundary. Without this, BPE
happily learns tokens like "g." or "e the" that glue unrelated words together.

Digits. Every digit is a chunk of its own, so digits are never merged and a
number is spelled one digit per token: "1234" is always 1 2 3 4. GPT-2-style
merges instead turn numbers into whatever pieces were frequent in the
training text ("1234" might be "123" "4" while "1235" is "12" "35"), so the
units, tens and hundreds land in different places each time. Aligned digits
are what a small model needs to learn arithmetic.

Special tokens. "<|bos|>", "<think>" and friends get the last ids of the
vocabulary. They are only recognised when the caller says so
(allowed_special="all" or a set of names); by default the text "<think>" is
encoded as ordinary bytes, so user text cannot forge a control token.
"""

from __future__ import annotations

import codecs
import functools
import json
import operator
import re
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

SPECIAL_TOKENS = ("<|bos|>", "<|eos|>", "<|pad|>", "<think>", "</think>", "<answer>", "</answer>")
FORMAT_VERSION = 1

# The alternatives are tried left to right at each position. Together they
# match every character, so joining the chunks gives back the text.
SPLIT_PATTERN = r"""
    \d                      # one digit, always alone: digits are never merged
  | [ ]?[^\W\d_]+           # a word (any script), with at most one leading space
  | [ ]?(?:[^\w\s]|_)+      # a run of punctuation or symbols, likewise
  | \s+(?!\S)               # whitespace, leaving the last space to the next word
  | \s+                     # any remaining whitespace
"""
_SPLIT_RE = re.compile(SPLIT_PATTERN, re.VERBOSE)


@dataclass(frozen=True)
class Merge:
    """One learned merge: the tokens `pair` become the single token `new_id`."""

    pair: tuple[int, int]  # the two ids merged
    new_id: int  # id given to the merged token
    count: int  # how often the pair occurred when it was chosen


def _hex_bytes(err: UnicodeDecodeError) -> tuple[str, int]:
    # Show bytes that are not valid UTF-8 on their own as "<0xE4>".
    bad = err.object[err.start : err.end]
    return "".join(f"<0x{b:02X}>" for b in bad), err.end


codecs.register_error("minids.hexbytes", _hex_bytes)


def _to_utf8(text: str) -> bytes:
    """UTF-8 bytes of `text`, or a ValueError pointing at the bad character."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"text contains an unpaired surrogate {text[e.start]!r} at position {e.start}; "
            "it cannot be encoded as UTF-8"
        ) from None


def _merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of `pair` in `ids`, scanning left to right.

    >>> _merge([1, 1, 1, 2], (1, 1), 9)
    [9, 1, 2]
    """
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _add_pairs(counts: Counter, ids: list[int], weight: int) -> None:
    """Add `weight` to the count of every adjacent pair in `ids` (negative to remove)."""
    for pair in zip(ids, ids[1:]):
        counts[pair] += weight
        if counts[pair] == 0:
            del counts[pair]


class Tokenizer:
    """Byte-level BPE. Ids 0-255 are bytes, then one id per merge, then the special tokens."""

    def __init__(self):
        self.merges: list[Merge] = []
        self._rebuild()

    # ---- derived tables -------------------------------------------------

    def _rebuild(self) -> None:
        """Recompute every table that follows from `self.merges`."""
        self.vocab: dict[int, bytes] = {i: bytes([i]) for i in range(256)}
        for m in self.merges:
            self.vocab[m.new_id] = self.vocab[m.pair[0]] + self.vocab[m.pair[1]]
        # rank = position in the merge list; lower ranks are applied first.
        self._ranks = {m.pair: rank for rank, m in enumerate(self.merges)}
        first_special = 256 + len(self.merges)
        self.special_tokens = {s: first_special + i for i, s in enumerate(SPECIAL_TOKENS)}
        self._id_to_bytes = dict(self.vocab)
        self._id_to_bytes.update({i: s.encode("utf-8") for s, i in self.special_tokens.items()})
        # (n_merges, chunk) -> ids. Real text repeats the same words constantly,
        # so caching chunks makes encoding many short documents cheap.
        self._cache: dict[tuple[int, str], tuple[int, ...]] = {}

    @property
    def vocab_size(self) -> int:
        return 256 + len(self.merges) + len(self.special_tokens)

    @property
    def bos_id(self) -> int:
        return self.special_tokens["<|bos|>"]

    @property
    def eos_id(self) -> int:
        return self.special_tokens["<|eos|>"]

    @property
    def pad_id(self) -> int:
        return self.special_tokens["<|pad|>"]

    # ---- training ---------------------------------------------------------

    def train(self, text: str, vocab_size: int, verbose: bool = False) -> "Tokenizer":
        """Learn `vocab_size - 256 - len(SPECIAL_TOKENS)` merges from `text`; returns self.

        Training stops early (with a smaller vocabulary) if the text runs out of pairs.
        """
        min_size = 256 + len(SPECIAL_TOKENS)
        if vocab_size < min_size:
            raise ValueError(f"vocab_size must be at least {min_size} (256 bytes + specials), got {vocab_size}")
        _to_utf8(text)  # fail early, with a position, on unencodable text

        # Work on unique chunks with their frequencies: "the" appears hundreds
        # of times but only needs to be merged once.
        chunk_freq = Counter(_SPLIT_RE.findall(text))
        words = [list(chunk.encode("utf-8")) for chunk in chunk_freq]
        freqs = list(chunk_freq.values())
        counts: Counter = Counter()
        for ids, freq in zip(words, freqs):
            _add_pairs(counts, ids, freq)

        self.merges = []
        self._rebuild()
        for new_id in range(256, vocab_size - len(SPECIAL_TOKENS)):
            if not counts:
                break
            pair = min(counts, key=lambda p: (-counts[p], p))  # most frequent, then smallest ids
            self.merges.append(Merge(pair, new_id, counts[pair]))
            # Only words containing the pair change; update their pair counts in place.
            for w, ids in enumerate(words):
                if pair[0] not in ids:
                    continue
                merged = _merge(ids, pair, new_id)
                if len(merged) < len(ids):
                    _add_pairs(counts, ids, -freqs[w])
                    _add_pairs(counts, merged, freqs[w])
                    words[w] = merged
            if verbose:
                piece = self._piece(self.vocab[pair[0]] + self.vocab[pair[1]])
                print(f"merge {new_id - 255}: {pair} -> {new_id} {piece!r} ({self.merges[-1].count} occurrences)")
            # keep vocab current so verbose output can show the bytes of new ids
            self.vocab[new_id] = self.vocab[pair[0]] + self.vocab[pair[1]]
        self._rebuild()
        return self

    # ---- encoding -----------------------------------------------------------

    def encode(self, text: str, allowed_special="none") -> list[int]:
        """Text -> token ids.

        allowed_special: "none" (default: special strings are plain text),
        "all", or a set of special-token strings to recognise.

        >>> tok = Tokenizer()
        >>> tok.encode("hi<|eos|>", allowed_special="all")
        [104, 105, 257]
        """
        return self._encode(text, allowed_special, len(self.merges))

    def encode_with_merges(self, text: str, n_merges: int) -> list[int]:
        """Encode using only the first `n_merges` merges (0 gives raw UTF-8 bytes).

        Sliding n_merges from 0 to len(merges) replays training on any text.
        """
        if not 0 <= n_merges <= len(self.merges):
            raise ValueError(f"n_merges must be between 0 and {len(self.merges)}, got {n_merges}")
        return self._encode(text, "none", n_merges)

    def _encode(self, text: str, allowed_special, n_merges: int) -> list[int]:
        _to_utf8(text)
        ids: list[int] = []
        for part, is_special in self._split_special(text, allowed_special):
            if is_special:
                ids.append(self.special_tokens[part])
                continue
            for chunk in _SPLIT_RE.findall(part):
                key = (n_merges, chunk)
                if key not in self._cache:
                    self._cache[key] = self._encode_chunk(chunk.encode("utf-8"), n_merges)
                ids.extend(self._cache[key])
        return ids

    def _split_special(self, text: str, allowed_special) -> Iterable[tuple[str, bool]]:
        """Yield (piece, is_special) so that special tokens are never split."""
        if allowed_special == "all":
            allowed = set(SPECIAL_TOKENS)
        elif allowed_special == "none":
            allowed = set()
        else:
            allowed = set(allowed_special)
            unknown = allowed - set(SPECIAL_TOKENS)
            if unknown:
                raise ValueError(f"not special tokens: {sorted(unknown)}; known: {list(SPECIAL_TOKENS)}")
        if not allowed:
            yield text, False
            return
        # Longest first, so a token that contains another one wins.
        alternatives = "|".join(re.escape(s) for s in sorted(allowed, key=len, reverse=True))
        # With a capture group, re.split puts the matches at the odd positions.
        for i, part in enumerate(re.split(f"({alternatives})", text)):
            if part:
                yield part, i % 2 == 1

    def _encode_chunk(self, chunk: bytes, n_merges: int) -> tuple[int, ...]:
        """Apply merges to one chunk, always the earliest-learned applicable one first."""
        ids = list(chunk)
        while len(ids) >= 2:
            pair = min(zip(ids, ids[1:]), key=lambda p: self._ranks.get(p, n_merges))
            rank = self._ranks.get(pair, n_merges)
            if rank >= n_merges:
                break  # no pair in this chunk is among the allowed merges
            ids = _merge(ids, pair, 256 + rank)
        return tuple(ids)

    # ---- decoding -----------------------------------------------------------

    def _bytes_of(self, ids: Sequence[int]) -> list[bytes]:
        out = []
        for i in ids:
            i = operator.index(i)  # accepts numpy ints and 0-d integer tensors too
            if i not in self._id_to_bytes:
                raise ValueError(f"token id {i} is out of range for vocab size {self.vocab_size}")
            out.append(self._id_to_bytes[i])
        return out

    def decode(self, ids: Sequence[int]) -> str:
        """Token ids -> text. Byte sequences that are not valid UTF-8 become U+FFFD."""
        return b"".join(self._bytes_of(ids)).decode("utf-8", errors="replace")

    @staticmethod
    def _piece(b: bytes) -> str:
        return b.decode("utf-8", errors="minids.hexbytes")

    def pieces(self, ids: Sequence[int]) -> list[str]:
        """One printable string per token, e.g. for colouring token boundaries.

        A token holding part of a multi-byte character shows its bytes:
        "你" split into single bytes gives ['<0xE4>', '<0xBD>', '<0xA0>'].
        """
        return [self._piece(b) for b in self._bytes_of(ids)]

    # ---- saving and loading ---------------------------------------------------

    def to_dict(self) -> dict:
        """A JSON-able description of this tokenizer (merges carry a readable "piece")."""
        return {
            "format_version": FORMAT_VERSION,
            "split_pattern": SPLIT_PATTERN,
            "special_tokens": dict(self.special_tokens),
            "merges": [
                {
                    "pair": list(m.pair),
                    "new_id": m.new_id,
                    "count": m.count,
                    "piece": self._piece(self.vocab[m.new_id]),
                }
                for m in self.merges
            ],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Tokenizer":
        """Rebuild a tokenizer from `to_dict()` output; ValueError says what is wrong."""
        if not isinstance(d, dict):
            raise ValueError(f"expected a JSON object, got {type(d).__name__}")
        missing = [k for k in ("format_version", "split_pattern", "special_tokens", "merges") if k not in d]
        if missing:
            raise ValueError(f"missing keys: {missing}")
        if d["format_version"] != FORMAT_VERSION:
            raise ValueError(f"format_version is {d['format_version']!r}, this code reads {FORMAT_VERSION}")
        if d["split_pattern"] != SPLIT_PATTERN:
            raise ValueError("split_pattern differs from this version's SPLIT_PATTERN")
        if not isinstance(d["merges"], list):
            raise ValueError("merges must be a list")

        merges, seen = [], set()
        for i, m in enumerate(d["merges"]):
            try:
                a, b = (operator.index(x) for x in m["pair"])
                new_id, count = operator.index(m["new_id"]), operator.index(m["count"])
            except (TypeError, KeyError, ValueError):
                raise ValueError(f"merge {i} is malformed: {m!r}") from None
            if new_id != 256 + i:
                raise ValueError(f"merge {i} has new_id {new_id}, expected {256 + i} (merges must be in order)")
            if not (0 <= a < new_id and 0 <= b < new_id):
                raise ValueError(f"merge {i} pair {[a, b]} uses ids not defined before {new_id}")
            if (a, b) in seen:
                raise ValueError(f"merge {i} repeats the pair {[a, b]}")
            seen.add((a, b))
            merges.append(Merge((a, b), new_id, count))

        tok = cls()
        tok.merges = merges
        tok._rebuild()
        if d["special_tokens"] != tok.special_tokens:
            raise ValueError(f"special_tokens should be {tok.special_tokens}, got {d['special_tokens']!r}")
        return tok

    def save(self, path) -> None:
        """Write human-readable JSON (one merge per object, with its piece)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path) -> "Tokenizer":
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except ValueError as e:  # includes JSONDecodeError and UnicodeDecodeError
            raise ValueError(f"cannot load tokenizer from {path}: {e}") from None


@functools.lru_cache(maxsize=None)
def default_tokenizer(vocab_size: int = 512) -> Tokenizer:
    """A tokenizer trained on the bundled corpus (English, Chinese, arithmetic).

    Training is deterministic and cached, so every call in a process returns
    the same object. Treat it as read-only.
    """
    text = resources.files("minids.data").joinpath("corpus.txt").read_text(encoding="utf-8")
    return Tokenizer().train(text, vocab_size)
