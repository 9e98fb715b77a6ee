"""中文：组件中的文字。与 en.py 的键和占位符一一对应（tests/test_i18n.py 会检查）。"""

MESSAGES = {
}
