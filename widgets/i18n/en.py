"""English words of the widgets (the default). Keys: "<widget file>.<what>"; keep zh.py in step."""

MESSAGES = {
}
