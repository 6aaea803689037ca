"""Each check reads the running cloud: a restart that left the old process running, an API
whose newest microversion moved, a service that dies after its phase, a schema tool that
exits 0 without migrating, an abort's failed step, a hung API call: the lab breaks the cloud
the way production does and the run says so instead of claiming the upgrade."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rollgate.core import events as ev
from rollgate.core.cloud import CloudAdapter
from rollgate.core.executor import TransportError
from rollgate.core.journal import read_journal
from rollgate.core.lab import Lab
from rollgate.core.releases import find_release
from rollgate.core.report import build_report
from tests.engine.conftest import abort_at_failure, drive, make
from tests.lab_helpers import lab_inventory


def said(h: object, step: str) -> str:
    return " ".join(
        line
        for e in h.events(ev.StepOutput)  # type: ignore[attr-defined]
        if e.step == step
        for line in e.lines
    )


async def test_a_restart_that_left_the_old_process_running_is_not_called_upgraded() -> None:
    """systemctl restart exits 0, the package is the target's, but the canary's nova-compute
    is the process that ran before the install: its check fails, the canary gate says NOT
    upgraded, and the node ends not done."""
    canary_titles: list[str] = []

    def decide(gate: ev.GateOpened) -> ev.Command | None:
        if gate.kind == "failure":
            return ev.Command("skip", "tester", "look at it after the window", gate.gate)
        if gate.kind == "canary":
            canary_titles.append(gate.title)
        return None

    h = await make(faults=["stale-restart:one-cmp1:nova-compute"], auto_approve=False)
    try:
        word = await drive(h, decide, timeout=60)
    finally:
        await h.lab.close()
    failed = [e for e in h.events(ev.StepFinished) if e.outcome == "failed"]
    assert [h.plan.step(e.step).action for e in failed] == ["running-version"]
    assert h.plan.step(failed[0].step).node == "one-cmp1"
    assert "nova-compute (nova-compute): stale" in failed[0].error
    assert "started before nova-compute" in failed[0].error
    one = next(t for t in canary_titles if "at one" in t)
    assert "NOT upgraded" in one
    assert h.engine.state.nodes["one-cmp1"].status == "skipped"
    assert word == "complete with deviations"


@pytest.mark.integration
async def test_the_compute_api_check_asks_anew_on_a_connection_made_before_the_upgrade(
    tmp_path: Path,
) -> None:
    """One adapter, one openstacksdk connection: asked before nova-api moves it reads 2.100;
    after nova-api runs 2026.1's code, the same adapter reads 2.103, and a check that wants
    2.103 before the move fails saying what the API announces."""
    lab = await Lab.start(lab_inventory(tmp_path), serve=True)
    adapter = CloudAdapter()
    lines: list[str] = []

    async def verify(want: str) -> tuple[int | None, str]:
        lines.clear()
        result = await adapter.cloud(
            site,
            "verify-api",
            {"service_type": "compute", "expect_microversion": want, "target": "2026.1"},
            on_output=lambda stream, line: lines.append(line),
            timeout=30,
        )
        await asyncio.sleep(0.05)  # output is handed over on the loop
        return result.exit_status, " ".join(lines) + " " + (result.error or "")

    try:
        site = lab.effective_inventory.site("one")
        status, text = await verify("2.103")
        assert status == 1 and "2.100" in text, text
        lab.world.nodes["ctl1"].units["nova-api"].code = find_release("2026.1")
        status, text = await verify("2.103")
        assert status == 0 and "microversions 2.1 to 2.103" in text, text
    finally:
        await adapter.close()
        await lab.close()


async def test_an_image_api_that_dies_after_its_phase_opens_an_outage_gate() -> None:
    """glance-api passes every check of the image phase, then dies: the watch sees the image
    API stop answering, journals it, holds the run at an outage gate, and the run does not
    end `complete`; the report gives the outage and the final verification's finding."""
    h = await make(
        faults=["dies-after:one-ctl1:glance-api:500"],  # 0.5 s at the scale set below
        auto_approve=False,
        options={"watch_interval": 0.05},
    )
    h.lab.world.time_scale = 0.001  # lab seconds are milliseconds: the unit dies 0.5 s on
    outages: list[ev.GateOpened] = []

    async def decide(gate: ev.GateOpened) -> ev.Command | None:
        if gate.kind == "outage":
            outages.append(gate)
            return ev.Command("approve", "tester", "glance team is on it", gate.gate)
        if gate.gate == "gate:one/compute":  # the image phase is behind: let it die
            ctl = h.lab.world.nodes["one-ctl1"]
            deadline = time.monotonic() + 10
            while ctl.units["glance-api"].alive(h.lab.world.now()):
                assert time.monotonic() < deadline, "the fault never killed glance-api"
                await asyncio.sleep(0.02)
            while not any(isinstance(e, ev.ServiceDown) for e in h.engine.history):
                assert time.monotonic() < deadline, "the watch never saw the image API down"
                await asyncio.sleep(0.02)  # seen while this gate is open; answered next
        return None

    try:
        word = await drive(h, decide, timeout=90)
    finally:
        await h.lab.close()
    assert word == "complete with deviations"
    down = [e for e in h.events(ev.ServiceDown) if e.site == "one"]
    assert [d.what for d in down][:1] == ["the image API"], down
    assert "503" in down[0].detail and down[0].phase == "one/image"
    assert "the image API" in outages[0].title and "one" in outages[0].title
    report = build_report(h.plan, {}, list(h.engine.history))
    assert report["outcome"] == "complete with deviations"
    assert report["outages"][0]["what"] == "the image API"
    assert report["outages"][0]["since"] is not None


async def test_a_schema_tool_that_moves_nothing_fails_the_schema_check() -> None:
    """neutron-db-manage upgrade --expand exits 0 and migrates nothing: the revision read
    back with `neutron-db-manage current` is the source's, and the step says so."""
    h = await make(faults=["schema-noop:neutron"])
    try:
        word = await drive(h, abort_at_failure, timeout=60)
    finally:
        await h.lab.close()
    failed = [e for e in h.events(ev.StepFinished) if e.outcome == "failed"]
    assert word == "aborted"
    step = h.plan.step(failed[0].step)
    assert step.action == "schema-version" and step.service == "neutron"
    assert "the neutron schema is at" in failed[0].error
    assert "its migrations did not move it" in failed[0].error
    assert "(head)" in said(h, step.id)  # what neutron-db-manage current printed


async def test_status_json_after_an_abort_names_the_failed_node_and_step(tmp_path: Path) -> None:
    from rollgate.core.control import status_of

    h = await make(tmp_path, faults=["fail:one-cmp2:systemctl restart nova-compute:1"])
    at_gate: list[dict[str, object]] = []

    def look_then_abort(gate: ev.GateOpened) -> ev.Command | None:
        if gate.kind == "failure":  # what `rollgate status --json` says at the open gate
            at_gate.append(status_of(h.engine, []))
        return abort_at_failure(gate)

    try:
        assert await drive(h, look_then_abort, timeout=60) == "aborted"
    finally:
        await h.lab.close()
    h.engine.journal.close()  # type: ignore[union-attr]
    [failed_at_gate] = at_gate[0]["gate"]["failures"]  # type: ignore[index]
    assert failed_at_gate["node"] == "one-cmp2" and failed_at_gate["exit_status"] == 1
    assert failed_at_gate["command"] == "systemctl restart nova-compute"
    assert failed_at_gate["title"] and failed_at_gate["last_output"] is not None
    assert at_gate[0]["not_upgraded"] == []  # the run has not ended: nothing is called left
    env = {**os.environ, "ROLLGATE_STATE_DIR": str(tmp_path / "state")}
    shown = subprocess.run(
        [sys.executable, "-P", "-m", "rollgate", "status", str(tmp_path / "journal.jsonl"),
         "--json"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    failed = [p for p in status["problems"] if p["outcome"] == "failed"]
    assert [(p["node"], p["site"]) for p in failed] == [("one-cmp2", "one")]
    record = failed[0]
    assert record["step"].endswith("one-cmp2/nova.restart:nova-compute")
    assert record["command"] == "systemctl restart nova-compute"
    assert record["exit_status"] == 1
    assert record["decision"] == "abort" and record["decided_by"] == "tester"
    assert set(record) >= {"title", "node_state", "error", "last_output", "comment"}
    # the run has ended: the compute it left behind is named, with why
    left = {n["node"]: n for n in status["not_upgraded"]}
    assert "restart nova-compute" in " ".join(left["one-cmp2"]["why"]), left["one-cmp2"]
    assert read_journal(tmp_path / "journal.jsonl").events[-1].outcome == "aborted"  # type: ignore[attr-defined]


@pytest.mark.integration
async def test_a_hung_compute_call_names_the_compute_endpoint_not_keystone(
    tmp_path: Path,
) -> None:
    """Enabling a compute while nova-api takes the request and never answers: the timeout
    message names the compute API's URL from the catalog (keystone answered; it is not the
    one to look at)."""
    inventory = lab_inventory(tmp_path, faults=["api-hang:one:compute"])
    lab = await Lab.start(inventory, serve=True)
    adapter = CloudAdapter()
    try:
        site = lab.effective_inventory.site("one")
        import dataclasses

        site = dataclasses.replace(site, openstack=dataclasses.replace(site.openstack, timeout=1.0))
        await adapter.cloud(  # keystone answers: the connection has its catalog
            site, "verify-api", {"service_type": "identity", "target": "2025.2"},
            on_output=lambda *a: None, timeout=30,
        )  # fmt: skip
        with pytest.raises(TransportError) as caught:
            await adapter.cloud(
                site, "enable-compute", {"host": "cmp1"}, on_output=lambda *a: None, timeout=30
            )
    finally:
        await adapter.close()
        await lab.close()
    message = str(caught.value)
    assert "the compute API of RegionOne" in message, message
    assert "/one/compute" in message and "/identity" not in message, message
    assert "did not answer enable-compute within 1s" in message


def test_what_the_run_is_still_moving_is_not_watched() -> None:
    """The acceptance cloud's venv plan: its preparation phase has steps on every node, but a
    compute the compute phase is upgrading is down on purpose; it is watched from the end of
    that phase, and the image API from the end of the image phase, not before."""
    from rollgate.core.engine.watch import watched
    from rollgate.core.inventory import load_inventory
    from rollgate.core.plan import build_plan
    from rollgate.core.state import RunState

    inventory = load_inventory(Path(__file__).parents[1] / "acceptance" / "inventory.yaml")
    plan = build_plan(inventory)
    state = RunState.initial(plan)
    state.phases.update({"dc1/prepare": "ok", "dc1/identity": "ok", "dc1/image": "running"})
    now = watched(plan, state, inventory.identity_site)["dc1"]
    assert now["the identity API"] == "dc1/identity"
    assert "the image API" not in now and "@cmp02:nova" not in now
    state.phases.update({"dc1/image": "ok", "dc1/compute": "running"})
    now = watched(plan, state, inventory.identity_site)["dc1"]
    assert now["the image API"] == "dc1/image"
    assert "@cmp02:nova" not in now and "the compute API" not in now
    state.phases["dc1/compute"] = "ok"
    now = watched(plan, state, inventory.identity_site)["dc1"]
    assert now["@cmp02:nova"] == "dc1/compute" and now["the compute API"] == "dc1/compute"


def test_what_shares_a_unit_with_what_a_phase_moves_is_not_watched_until_it_ends() -> None:
    """apt runs placement, cinder-api and horizon under one apache2: cinder's phase stops it
    (its skip-level downtime), so placement's API is watched only once that phase ended."""
    from rollgate.core.engine.watch import watched
    from rollgate.core.inventory import load_inventory
    from rollgate.core.plan import build_plan
    from rollgate.core.state import RunState

    demo = load_inventory(Path(__file__).parents[2] / "sample_inventory" / "lab-two-sites.yaml")
    plan = build_plan(demo)
    state = RunState.initial(plan)
    state.phases.update({"central/identity": "ok", "east/image": "ok", "east/compute": "ok",
                         "east/block-storage": "running"})  # fmt: skip
    now = watched(plan, state, demo.identity_site)["east"]
    assert "the compute API" in now and "the placement API" not in now
    state.phases["east/block-storage"] = "ok"  # horizon's phase restarts apache2 too
    assert "the placement API" not in watched(plan, state, demo.identity_site)["east"]
    state.phases["east/dashboard"] = "ok"
    assert "the placement API" in watched(plan, state, demo.identity_site)["east"]
