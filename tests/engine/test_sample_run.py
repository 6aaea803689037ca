"""The recorded sample run ships with the current format and can be regenerated."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from rollgate.core.client import open_journal_client
from rollgate.core.inventory import load_inventory
from rollgate.core.journal import read_journal
from rollgate.core.plan import build_plan
from rollgate.core.report import build_report
from tests.sample_run import INVENTORY, SHIPPED, record


def test_the_shipped_sample_run_reads_with_the_current_format() -> None:
    client = open_journal_client(str(SHIPPED))
    assert client.header["plan_digest"] == build_plan(load_inventory(INVENTORY)).digest, (
        "the plan changed: regenerate with `python -m tests.sample_run`"
    )
    report = build_report(client.plan, client.header, client.all_events())
    assert report["outcome"] == "complete with deviations"
    assert [n["node"] for n in report["not_upgraded"]] == ["west-ctl1"]
    assert report["deviations"]["skips"] and report["deviations"]["retries"]
    assert {g["operator"] for g in report["gates"]} == {"alice", "bob"}
    assert all(g["comment"] for g in report["gates"])


def test_regenerating_gives_the_shipped_run(tmp_path: Path) -> None:
    fresh = tmp_path / "journal.jsonl"
    assert asyncio.run(record(fresh)) == "complete with deviations"
    shipped, again = read_journal(SHIPPED), read_journal(fresh)
    assert again.header == shipped.header
    assert [e.to_dict() for e in again.events] == [e.to_dict() for e in shipped.events], (
        "the sample run changed: regenerate with `python -m tests.sample_run`"
    )
    assert json.loads(fresh.read_text().splitlines()[0])["format"] == "rollgate.journal/2"
    assert fresh.read_bytes() == SHIPPED.read_bytes()  # the same bytes, integrity checks too
