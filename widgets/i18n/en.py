"""English words of the widgets (the default). Keys are "<widget file>.<what>"; zh.py has the same keys
with the same {placeholders} (tests/test_i18n.py checks)."""

MESSAGES = {
    # common.py: checked text input
    "common.empty_text": "Type some text first.",
    "common.cannot_encode": "That text can't be encoded: {error}",
    "common.too_long": "That is {n} tokens; this model reads at most {max_tokens}. Shorten the text.",
    "common.sep": ", ",
    # tokens.py: the tokenizer playground and the compression curve
    "tokens.bad_n": "n must be between 0 and {total}, got {n}",
    "tokens.no_merges": "no merges yet (0 of {total}): every token is one UTF-8 byte",
    "tokens.merge": "merge {n} of {total}: '{a}' + '{b}' → '{new}' (id {id}, seen {count} times)",
    "tokens.bad_sizes": "vocabulary sizes start at {min} (bytes + specials), got {got}",
    "tokens.part.all": "all",
    "tokens.part.English": "English",
    "tokens.part.Chinese": "Chinese",
    "tokens.part.arithmetic": "arithmetic",
    "tokens.hover": "vocab %{x}: %{y:.2f} bytes/token",
    "tokens.compression_title": "compression: bytes per token against vocabulary size",
    "tokens.vocab_size": "vocabulary size",
    "tokens.bytes_per_token_axis": "UTF-8 bytes per token",
    "tokens.text": "text",
    "tokens.merges": "merges",
    "tokens.replay_heading": "Replay the merges on this text",
    "tokens.stats": "{n} tokens for {bytes} bytes: <b>{bpt:.2f} bytes per token</b>",
    "tokens.replay_stats": "{n} tokens, {bpt:.2f} bytes per token",
    # sampling.py: temperature, top-k, top-p
    "sampling.bad_temperature": "temperature must be >= 0, got {temperature}",
    "sampling.greedy": "temperature 0 (greedy)",
    "sampling.temperature_value": "temperature {temperature:.2g}",
    "sampling.caption": ("{settings}: p(top token '{piece}') = {p:.2f}, entropy {entropy:.2f} nats, "
                         "{possible} tokens possible"),
    "sampling.caption_one": ("{settings}: p(top token '{piece}') = {p:.2f}, entropy {entropy:.2f} nats, "
                             "{possible} token possible"),
    "sampling.model_t1": "model (temperature 1)",
    "sampling.model": "model",
    "sampling.sampled_from": "sampled from",
    "sampling.probability": "probability",
    "sampling.next_token": "next token",
    "sampling.no_room": "The prompt fills the whole context: no room left to sample.",
    "sampling.greedy_note": " (greedy: every sample is the same)",
    "sampling.n_samples": "{n} samples{note}:",
    "sampling.prompt": "prompt",
    "sampling.temperature": "temperature",
    "sampling.top_k": "top-k (0 off)",
    "sampling.seed": "seed",
    "sampling.figure_title": "next token after the prompt, {settings}",
}
