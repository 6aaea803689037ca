"""Replay and watch read a journal through the same reducer as the live run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rollgate.core import events as ev
from rollgate.core.client import open_journal_client
from rollgate.core.journal import JournalWriter
from tests.cli_helpers import rollgate

SMALL = Path(__file__).with_name("small.yaml")


@pytest.mark.integration
def test_headless_replay_shows_the_final_state_and_every_decision(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    run = rollgate(
        tmp_path,
        "run",
        str(SMALL),
        "--headless",
        "--auto-approve",
        "--lab-inprocess",
        "--operator",
        "pat",
        "--journal",
        str(journal),
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = rollgate(tmp_path, "replay", str(journal), "--headless")
    assert out.returncode == 0, out.stderr
    assert "complete" in out.stdout
    assert "gate gate:hub/identity: approve by auto-approve at " in out.stdout
    assert "approved automatically (--auto-approve)" in out.stdout
    with open(journal, "a") as f:  # a crash mid-write
        f.write('{"type":"step-started","seq":99999,"step":"x"')
    torn = rollgate(tmp_path, "replay", str(journal), "--headless")
    assert torn.returncode == 0
    assert "the journal ended mid-line (a crash); replayed up to the tear" in torn.stdout


async def test_watch_follows_what_the_driver_appends(tmp_path: Path) -> None:
    from rollgate.core.inventory import load_inventory
    from rollgate.core.plan import build_plan

    plan = build_plan(load_inventory(SMALL))
    path = tmp_path / "j.jsonl"
    writer = JournalWriter(path, {"run_id": "w", "plan": plan.to_dict()})
    writer.write(ev.RunStarted(seq=1, run_id="w", operator="o", plan_digest=plan.digest))
    client = open_journal_client(str(path), follow=True)
    client.poll = 0.02
    seen: list[int] = []

    async def watch() -> None:
        async for event in client.events(1):  # ends by itself with the run's last event
            seen.append(event.seq)

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.1)
    writer.write(ev.PhaseStarted(seq=2, phase=plan.phases[0].id))
    writer.write(ev.RunFinished(seq=3, outcome="complete"))
    await asyncio.wait_for(watcher, 5)
    assert seen == [1, 2, 3]
    again = open_journal_client(str(path), follow=True)  # a finished run: nothing to follow
    assert [e.seq async for e in again.events(1)] == [1, 2, 3]
    with pytest.raises(Exception, match="only watches"):
        await client.send(ev.Command("approve", "intruder"))


@pytest.mark.integration
def test_report_names_failures_skips_retries_and_decisions(tmp_path: Path) -> None:
    import json

    from rollgate.core.client import open_journal_client
    from rollgate.core.report import build_report, redact
    from tests.engine.conftest import drive, make

    async def run() -> Path:
        h = await make(
            tmp_path,
            auto_approve=False,
            faults=[
                "fail:one-ctl1:glance-manage db sync:1:1",
                "fail:two-ctl1:neutron-db-manage upgrade --contract",
            ],
        )

        def decide(gate: ev.GateOpened) -> ev.Command:
            if gate.kind == "failure" and "db sync" in gate.title:
                return ev.Command("retry", "kim", "", gate.gate)
            if gate.kind == "failure":
                return ev.Command("skip", "kim", "contract on Monday", gate.gate)
            return ev.Command("approve", "kim", "go", gate.gate)

        assert await drive(h, decide) == "complete with deviations"
        h.engine.journal.close()  # type: ignore[union-attr]
        return tmp_path / "journal.jsonl"

    journal = asyncio.run(run())
    client = open_journal_client(str(journal))
    report = build_report(client.plan, client.header, client.all_events())
    assert report["outcome"] == "complete with deviations"
    assert [(n["node"], n["state"]) for n in report["not_upgraded"]] == [("two-ctl1", "skipped")]
    assert report["not_upgraded"][0]["why"] == [
        "neutron-db-manage upgrade --contract: skipped (contract on Monday)"
    ]
    assert {
        "step": "two/compute/neutron-contract/two-ctl1/neutron.db-contract",
        "title": "neutron-db-manage upgrade --contract",
        "node": "two-ctl1",
        "reason": "contract on Monday",
    } in report["deviations"]["skips"]
    assert {
        "step": "one/image/glance-api@one-ctl1/one-ctl1/glance.db-sync",
        "title": "glance-manage db sync",
        "node": "one-ctl1",
        "attempts": 2,
    } in report["deviations"]["retries"]
    decided = [(g["decision"], g["operator"], g["comment"]) for g in report["gates"]]
    assert ("approve", "kim", "go") in decided and ("retry", "kim", "") in decided
    assert all(p["duration_s"] is not None for p in report["phases"])
    assert json.loads(json.dumps(report)) == report
    out = rollgate(tmp_path, "report", str(journal), "--format", "md")
    assert (
        out.returncode == 0
        and "| Compute (placement, nova, neutron) | two | ok with deviations |" in out.stdout
    )
    assert (
        "skipped neutron-db-manage upgrade --contract on two-ctl1: contract on Monday" in out.stdout
    )
    assert "two/compute/neutron" not in out.stdout.split("## Deviations")[1]  # titles, not ids
    assert redact("mysql --password=hunter2 ok") == "mysql --password=******** ok"
