"""The report is a change record: a self-contained HTML page with real tables, and Markdown
whose tables survive any text an operator typed."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from rollgate.core import events as ev
from rollgate.core.report import build_report, to_html, to_markdown
from tests.engine.conftest import drive, make


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.links += [v or "" for k, v in attrs if k in ("src", "href")]


async def test_html_and_markdown_reports_of_a_run_with_typed_text(tmp_path: Path) -> None:
    h = await make(tmp_path, auto_approve=False)

    def decide(gate: ev.GateOpened) -> ev.Command | None:
        return ev.Command("approve", "olga", "ticket CHG-1 | <b>ok</b>", gate.gate)

    try:
        assert await drive(h, decide) == "complete"
    finally:
        await h.lab.close()
    report = build_report(h.plan, {"run_id": "t", "operator": "olga"}, h.engine.history)
    page = to_html(report)
    parser = Tags()
    parser.feed(page)
    assert page.startswith("<!doctype html>") and {"table", "th", "td", "h2"} <= set(parser.tags)
    assert parser.links == []  # self-contained: no stylesheet, script or image to fetch
    assert "<b>ok</b>" not in page and "&lt;b&gt;ok&lt;/b&gt;" in page  # text, never markup
    assert "<h2>Versions before and after</h2>" in page and "nova-compute" in page
    markdown = to_markdown(report)
    gate_rows = [line for line in markdown.splitlines() if "CHG-1" in line]
    assert gate_rows and all(
        len(re.findall(r"(?<!\\)\|", row)) == 6 for row in gate_rows
    )  # five cells: the typed | is escaped, so every row keeps its columns
