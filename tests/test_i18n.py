"""The widgets' message tables (widgets/i18n): the same keys and placeholders in every language,
the language switch, and widgets really speaking Chinese after `set_language("zh")`."""

import re

import pytest

import widgets
from widgets import i18n
from widgets.i18n import TABLES, msg, placeholders

CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture
def zh():
    widgets.set_language("zh")
    yield
    widgets.set_language("en")


def test_every_key_in_every_language():
    en = set(TABLES["en"])
    for lang, table in TABLES.items():
        assert set(table) == en, (f"{lang}: missing {sorted(en - set(table))}, "
                                  f"extra {sorted(set(table) - en)}")


@pytest.mark.parametrize("key", sorted(TABLES["en"]))
def test_same_placeholders_and_they_format(key):
    fields = placeholders(TABLES["en"][key])
    for lang, table in TABLES.items():
        assert placeholders(table[key]) == fields, f"{lang} {key}: {table[key]!r}"
        table[key].format(**{f: 1 for f in fields})  # every format spec takes a number


def _prose(text):
    """The words of a message outside its {placeholders} and plotly's %{...} fields."""
    return re.sub(r"%\{[^}]*\}|\{[^}]*\}", "", text)


@pytest.mark.parametrize("key", sorted(k for k, v in TABLES["en"].items() if re.search(r"[A-Za-z]{4}", _prose(v))))
def test_chinese_is_translated(key):
    """An English message with words in it has Chinese characters in its zh entry."""
    assert CJK.search(TABLES["zh"][key]), f"zh {key} is not translated: {TABLES['zh'][key]!r}"


def test_language_switch(zh):
    assert widgets.get_language() == "zh"
    assert msg("tokens.merges") == "合并次数"
    widgets.set_language("en")
    assert msg("tokens.merges") == "merges"
    with pytest.raises(ValueError, match="one of en, zh"):
        widgets.set_language("fr")
    with pytest.raises(KeyError):
        msg("no.such.key")


def test_placeholders_parser():
    assert placeholders("merge {n} of {total:,} {{literal}}") == {"n", "total"}


def test_plotly_figures_use_a_cjk_font_stack():
    import plotly.graph_objects as go

    fig = go.Figure()
    assert "Noto Sans CJK SC" in fig.layout.template.layout.font.family
    assert "Noto Sans CJK SC" in i18n.FONT_FAMILY


def test_widgets_speak_chinese(zh, tok):
    from widgets.common import check_text
    from widgets.tokens import TokenizerPlayground, compression_figure, merge_description

    assert CJK.search(check_text("", tok, 10)[1])
    assert merge_description(tok, 1).startswith("第 1 次合并")
    fig = compression_figure({"vocab_size": [263, 300], "all": [1.0, 1.2], "Chinese": [1.0, 1.1]})
    assert CJK.search(fig.layout.title.text) and CJK.search(fig.layout.xaxis.title.text)
    assert [tr.name for tr in fig.data] == ["全部", "中文"]
    pg = TokenizerPlayground(tok, text="猫坐在垫子上")
    assert pg.merges.description == "合并次数" and "每词元" in pg.stats.value
    pg.text.value = ""
    assert "请先输入" in pg.stats.value


def test_english_is_the_default(tok):
    from widgets.tokens import merge_description

    assert widgets.get_language() == "en"
    assert merge_description(tok, 1).startswith("merge 1 of")


@pytest.mark.parametrize("key", sorted(TABLES["en"]))
def test_messages_without_fields_have_no_escaped_braces(key):
    """msg() formats only when given fields, so a message without placeholders must not need '{{'."""
    for table in TABLES.values():
        if not placeholders(table[key]):
            assert "{{" not in table[key] and "}}" not in table[key], key


def test_figures_of_other_widgets_speak_chinese(zh):
    from widgets.dashboard import status_line
    from widgets.rl_dashboard import dashboard_figure

    assert status_line([]) == "等待第一步……"
    assert status_line([{"step": 3, "loss": 1.5}], total_steps=10) == "第 3 步 / 10 · 损失 1.500"
    fig = dashboard_figure([{"step": 1, "reward": 0.5, "accuracy": 0.4, "format": 0.9, "think_length": 5.0}])
    assert fig.layout.xaxis.title.text == "强化学习步数"
    assert [a.text for a in fig.layout.annotations][:2] == ["奖励与准确率", "平均思考长度（词元）"]
    assert fig.data[0].name == "平均奖励"
