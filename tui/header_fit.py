"""The header's first line at any width: its pieces are dropped least-used first (as k9s
does), so the run's state, the engine's loss, the window and the estimate are the last to go."""

from __future__ import annotations

from dataclasses import dataclass

from rich.cells import cell_len
from rich.text import Text


@dataclass(frozen=True)
class Piece:
    """A piece of the header; `keep`: the higher, the later it is dropped."""

    text: str
    keep: int
    style: str = ""


def fit(pieces: list[Piece], width: int) -> Text:
    """The pieces in their order, without the least kept ones until the rest fits `width`
    (what still does not fit is cut by the header's ellipsis)."""
    shown = [p for p in pieces if p.text]
    while len(shown) > 1 and sum(cell_len(p.text) for p in shown) > width:
        shown.remove(min(shown, key=lambda p: p.keep))
    return Text.assemble(*((p.text, p.style) for p in shown))
