"""Garbage-collector settings for the long-lived entry points (console, replay, headless runs).

The library never touches the collector's settings; these entry points do, because a console
or a run that holds a 10,000-node plan for hours pays for every full collection that rescans
it. `tuned_gc` applies the settings and undoes them on exit, so tests leave the process as
they found it.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


def _freeze_survivors(phase: str, info: dict[str, int]) -> None:
    """After a full collection, keep what survived it out of the next ones.

    At thousands of nodes a full collection rescans every widget, cache and string the console
    holds: a 100-200 ms stall every few seconds under load, most of the console's worst-case
    latency. What survives a full collection is live now; freezing it means later full
    collections scan only what is newer. The cost: a reference cycle among frozen objects that
    later becomes garbage is not reclaimed (a closed page, a few kilobytes), which over a
    maintenance window is far less than the stalls cost.
    """
    if phase == "stop" and info.get("generation") == 2:
        gc.freeze()


# a young collection every 10,000 allocations, not 700: a run of 10 x 1,000 computes spent a
# fifth of its time collecting (7 of 34 s, measured with gc.callbacks; 1.4 s at this setting).
# Every 50,000 was tried for an engine without a console: the in-process run gained 1-5 %,
# but the 1,000-node lab run over SSH peaked at 384 MB instead of 339 (its connections'
# reference cycles wait longer to be collected), and real runs are over SSH (2026-12-05)
YOUNG_THRESHOLD = (10_000, 10, 10)

_console_tuned = False  # inside tuned_gc(console=True)


def screen_built() -> None:
    """A console has built and drawn its screen (a site map of thousands of nodes): that lives
    as long as the console, so under `tuned_gc(console=True)` it is kept out of later full
    collections (the first one otherwise rescans it: 100 ms under load at 5,000 nodes)."""
    if _console_tuned:
        gc.freeze()


@contextmanager
def tuned_gc(*, console: bool = False) -> Iterator[None]:
    """Freeze what exists now (the plan and the initial state live as long as the run) and
    collect young objects less often (a console's frame and an engine's step each allocate
    thousands of short-lived objects; measured under load: a console's worst-case event to
    screen 150 ms -> 110 ms, a 10 x 1,000 in-process run 21k -> 26k events/s); for a console
    also freeze what survives each full collection. A headless run freezes no survivors: its SSH
    connections are reference cycles that die later, and frozen they were never collected (the
    1,000-node lab run over SSH grew from 290 MB to 626 MB); with its history packed
    (core/history.py) it runs as fast without. Everything is undone on exit."""
    threshold = gc.get_threshold()
    gc.freeze()
    global _console_tuned
    gc.set_threshold(*YOUNG_THRESHOLD)
    if console:
        gc.callbacks.append(_freeze_survivors)
        _console_tuned = True
    try:
        yield
    finally:
        if console:
            _console_tuned = False
            gc.callbacks.remove(_freeze_survivors)
        gc.set_threshold(*threshold)
        gc.unfreeze()
