"""How a duration reads to an operator (45s, 12m, 1h05m), for the report, the gates and
`rollgate status`, which needs nothing else of the report."""

from __future__ import annotations


def span_words(seconds: float) -> str:
    """A duration as an operator reads it: 45s, 12m, 1h05m."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"
