"""Interactive widgets for the minids notebooks: each file holds one widget, split into pure compute functions, render functions returning plotly figures, and a thin ipywidgets class wiring controls to an Output."""

from .i18n import get_language, msg, set_language  # noqa: F401  (the widgets' language: en or zh)
