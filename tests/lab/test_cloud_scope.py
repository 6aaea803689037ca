"""The cloud against the inventory: what the APIs list beyond it stops a run before anything
moves, unless declared `unmanaged:`; declared hosts are in the plan and the change record."""

from __future__ import annotations

from pathlib import Path

from rollgate.core import events as ev
from rollgate.core.cloud_scope import Declared, compare
from rollgate.core.inventory import parse_inventory
from rollgate.core.plan import build_plan
from rollgate.core.report import declared_unmanaged
from tests.engine.conftest import SMALL, abort_at_failure, drive, make


def test_compare_names_every_service_the_plan_would_not_upgrade() -> None:
    listed = {
        "cmp1": {"nova-compute", "neutron-openvswitch-agent", "cinder-volume"},
        "cmp9": {"nova-compute"},
        "ctl1": {"nova-conductor", "neutron-bgp-dragent"},
        "old1": {"nova-compute"},
    }
    roles = {"cmp1": ("nova-compute", "neutron-l2-agent"), "ctl1": ("nova-conductor",)}
    found = compare(listed, roles, [Declared("old1", "retired in March")])
    assert found.blockers == [
        "cmp1 cinder-volume (the inventory does not give it cinder-volume)",
        "cmp9 nova-compute (a host the inventory does not have)",
        "ctl1 neutron-bgp-dragent (a service Rollgate has no role for)",
    ]
    assert found.declared == [
        "old1 nova-compute: not upgraded by Rollgate (declared: retired in March)"
    ]
    # a declaration of some binaries covers only those
    only = compare({"cmp1": {"cinder-volume", "nova-compute"}}, {},
                   [Declared("cmp1", "ceph team's", ("cinder-volume",))])  # fmt: skip
    assert only.blockers == ["cmp1 nova-compute (a host the inventory does not have)"]


async def test_a_service_beyond_the_inventory_stops_the_run_before_anything_moves() -> None:
    h = await make(faults=["unlisted:one:one-cmp9:nova-compute"])  # --auto-approve is on
    outcome = await drive(h, abort_at_failure)
    assert outcome == "aborted"
    failed = [e for e in h.events(ev.StepFinished) if e.outcome == "failed"]
    assert [e.step for e in failed] == ["one/scope/scope/one-ctl1/verify-scope"]
    assert "one-cmp9 nova-compute (a host the inventory does not have)" in failed[0].error
    gates = h.events(ev.GateOpened)
    assert [g.kind for g in gates] == ["failure"]  # asked, and not answered automatically
    decided = h.events(ev.GateDecided)
    assert [d.operator for d in decided] == ["tester"]
    started = {e.step.split("/")[1] for e in h.events(ev.StepStarted)}
    assert started == {"scope"}  # nothing else started: every node as it was
    assert all(
        release == h.inventory.upgrade.source
        for node in h.lab.world.nodes.values()
        for release in node.packages.values()
    )


def test_declared_hosts_are_in_the_plan_and_the_change_record(tmp_path: Path) -> None:
    text = (
        SMALL.read_text()
        .replace(
            '      - {name: "one-cmp[1:5]"',
            '      - {name: "one-cmp[1:5]"',
        )
        .replace(
            "  two:\n",
            '    unmanaged:\n      - {host: one-gpu1, reason: "vendor-managed GPU host, CHG-12"}\n'
            '      - {host: one-ctl1, binaries: [neutron-bgp-dragent], reason: "BGP team"}\n'
            "  two:\n",
        )
    )
    plan = build_plan(parse_inventory(text, str(tmp_path / "inv.yaml")))
    assert declared_unmanaged(plan) == [
        "one-gpu1 (one): not upgraded by Rollgate (declared: vendor-managed GPU host, CHG-12)",
        "one-ctl1 neutron-bgp-dragent (one): not upgraded by Rollgate (declared: BGP team)",
    ]
    bad = text.replace("binaries: [neutron-bgp-dragent], ", "")
    try:
        parse_inventory(bad, "inv.yaml")
    except Exception as exc:  # InventoryError: one problem, naming the entry
        assert "one-ctl1 is a node of this site: Rollgate upgrades it" in str(exc.problems[0])  # type: ignore[attr-defined]
    else:
        raise AssertionError("a whole node of the inventory declared unmanaged was accepted")


async def test_skipping_the_scope_check_still_never_ends_complete() -> None:
    """An operator skips the failed scope check: the upgrade runs, and the final verification
    reads the region's services again, so the run ends with deviations naming the host."""
    h = await make(faults=["unlisted:one:one-cmp9:nova-compute"])

    def decide(gate: ev.GateOpened) -> ev.Command | None:
        if gate.kind == "failure":
            return ev.Command("skip", "tester", "cmp9 is being retired tonight", gate.gate)
        return None

    assert await drive(h, decide, timeout=60) == "complete with deviations"
    found = [e for e in h.events(ev.StepFinished) if e.outcome == "deviation"]
    scope = [e for e in found if e.step == "one/verify/verify/one-ctl1/verify-scope"]
    assert scope and "one-cmp9 nova-compute (a host the inventory does not have)" in (
        scope[0].error
    )
