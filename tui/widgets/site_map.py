"""The site map: each site with its nodes' counts, each node on a line (glyph, name, state,
version, scheduler); enter on a node says NodeChosen."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.message import Message
from textual.widgets import Tree

from rollgate.core.state import RunState
from rollgate.core.words import GLYPHS

SITES_OPEN_UP_TO = 500  # nodes: a bigger cloud's site map opens with its sites closed


def short_version(version: str) -> str:
    """A package version as an operator compares it: upstream's part only, without the
    epoch and the distribution's revision (3:27.1.0-0ubuntu1~cloud0 -> 27.1.0); node detail
    has it whole. A probe's word (stale, not-running) stays as it is."""
    match = re.match(r"^(?:\d+:)?([0-9][^-~+]*)", version)
    return match.group(1) if match else version


def node_label(state: RunState, name: str) -> Text:
    """A node's line: glyph, name, state, its version (short), the scheduler when disabled."""
    node = state.nodes[name]
    extra = []
    if node.version:  # first, and short: what an operator compares across nodes
        extra.append(short_version(node.version))
    if node.disabled:
        extra.append("disabled in scheduler")
    return Text.assemble(
        f"{GLYPHS.get(node.status, '?')} ",
        (name.ljust(14), "bold"),
        f" {node.status:<11}",
        " · ".join(extra),
    )


class SiteMap(Tree[str]):
    """Built once (and again for a filter); then only the nodes events touched are
    relabelled, and the sites' counts redrawn."""

    DEFAULT_CSS = """
    SiteMap { width: 45%; border: round $primary; }
    SiteMap:focus { border: double $accent; }
    """

    @dataclass
    class NodeChosen(Message):
        """Enter on a node: its detail is asked for."""

        name: str

    def __init__(self) -> None:
        super().__init__("sites", id="sitemap")
        self.rows: dict[str, Any] = {}  # node -> its leaf
        self.sites: dict[str, Any] = {}  # site -> its branch
        self.touched: set[str] = set()  # nodes whose label may have changed
        self.counts_dirty = True  # the sites' counts are to be drawn
        self.filter = ""

    @property
    def pending(self) -> bool:
        return bool(self.touched) or self.counts_dirty

    def build(self, state: RunState, wanted: str = "") -> None:
        """(Re)build with the nodes that match `wanted` (a part of the name, or a state)."""
        self.filter = wanted
        self.clear()
        self.root.expand()
        self.rows = {}
        sites: dict[str, Any] = {}
        lowered = wanted.lower()
        # a big cloud opens as a line per site with its counts (enter opens one); a filter
        # shows its matches opened
        opened = bool(lowered) or len(state.nodes) <= SITES_OPEN_UP_TO
        for name, node in state.nodes.items():
            if lowered and lowered not in name.lower() and lowered != node.status:
                continue
            if node.site not in sites:
                sites[node.site] = self.root.add(node.site, expand=opened)
            self.rows[name] = sites[node.site].add_leaf(node_label(state, name), data=name)
        self.sites = sites
        self.border_title = f"site map: filter '{wanted}'" if wanted else "site map"
        self.touched = set()  # labelled as built: the first frame relabels nothing
        self.counts_dirty = True

    def draw(self, state: RunState) -> None:
        """Relabel only the nodes that events touched since the last frame; the counts."""
        touched, self.touched = self.touched, set()
        self.counts_dirty = False
        for name in touched:
            leaf = self.rows.get(name)
            if leaf is None or name not in state.nodes:
                continue
            label = node_label(state, name)
            if str(leaf.label) != str(label):
                leaf.set_label(label)
        per_site: dict[str, dict[str, int]] = {}
        for node in state.nodes.values():  # one pass, not one per site
            counts = per_site.setdefault(node.site, {})
            counts[node.status] = counts.get(node.status, 0) + 1
        for site, branch in self.sites.items():
            c = per_site.get(site, {})
            branch.set_label(f"{site}  " + "  ".join(f"{k} {v}" for k, v in sorted(c.items())))

    @property
    def cursor_name(self) -> str | None:
        node = self.cursor_node
        return node.data if node is not None and node.data else None

    def on_tree_node_selected(self, event: Tree.NodeSelected[str]) -> None:
        if event.node.data:
            event.stop()
            self.post_message(self.NodeChosen(event.node.data))
