"""One guard for every numeric control: NaN, infinity or a value outside the control's range becomes a
visible message, never an exception or a "nan" on screen.

ipywidgets clamps a FloatSlider to [min, max] but lets NaN through (every comparison with NaN is
false), and a value can be set from code past a control's bounds. Each widget's handler asks first:

    message = bad_controls(self.temperature, self.top_p)
    if message:
        self.caption.value = message_html(message)   # and clear what would show stale numbers
        return
"""

from __future__ import annotations

import math
import numbers


def bad_controls(*controls) -> str | None:
    """The first control whose value is not a finite number within its [min, max], as a message; else None."""
    for c in controls:
        v, name = c.value, getattr(c, "description", "") or "this control"
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            return f"{name} must be a finite number, got {v!r}; move the control to set it again."
        lo, hi = getattr(c, "min", None), getattr(c, "max", None)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            return f"{name} must lie between {lo:g} and {hi:g}, got {v:g}."
    return None
