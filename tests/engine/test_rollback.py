"""`rollgate rollback` in the lab (apt): a site's phases undone, the last first, from what the
run's journal says it did; the other sites, and keystone, stay where the run left them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from rollgate.core import events as ev
from rollgate.core.engine import Engine, EngineOptions
from rollgate.core.engine.client import EngineClient
from rollgate.core.errors import UserError
from rollgate.core.inventory import parse_inventory
from rollgate.core.rollback import RollbackRequest, build_rollback_plan
from tests.cli_helpers import rollgate
from tests.engine.conftest import SMALL, Harness, abort_at_failure, drive, make


async def _upgraded(tmp_path: Path) -> tuple[Harness, dict[str, Any], list[ev.Event]]:
    h = await make(tmp_path)
    assert await h.engine.run() == "complete"
    header = {"run_id": "up", "inventory_digest": h.inventory.digest,
              "plan": h.plan.to_dict()}  # fmt: skip
    return h, header, list(h.engine.history)


OPTIONS = EngineOptions("tester", "rb", auto_approve=True, flush_interval=0.01)


async def _roll_back(h: Harness, plan: Any) -> Engine:
    engine = Engine(plan, h.inventory, h.lab.executor(), OPTIONS)
    assert await engine.run() == "complete", [
        (e.step, e.error) for e in engine.history
        if isinstance(e, ev.StepFinished) and e.outcome != "ok"
    ]  # fmt: skip
    return engine


async def test_a_site_goes_back_whole_and_the_others_stay(tmp_path: Path) -> None:
    h, header, events = await _upgraded(tmp_path)
    source, target = h.inventory.upgrade.source, h.inventory.upgrade.target
    plan = build_rollback_plan(h.inventory, header, events, RollbackRequest("up", "one"))
    stages = [s.id.split("/")[-1] for s in plan.phases[0].stages]
    assert stages[0] == "block-storage-stop" and stages[-1].startswith("image-")  # last first
    engine = await _roll_back(h, plan)
    world = h.lab.world
    for node in (n for n in world.nodes.values() if n.site == "one"):
        services = [p for p in node.packages if p != "python3-oslo.messaging"]
        named = [p for p in services if p not in ("openvswitch-switch", "libvirt-daemon-system")]
        assert all(node.packages[p] == source for p in named), (node.name, node.packages)
        assert all(u.code == source for u in node.units.values()), node.name
    for service in ("glance", "placement", "nova", "neutron", "cinder"):
        assert world.databases[("one", service)].schema == source, service
    assert world.databases[("hub", "keystone")].schema == target  # keystone stays
    assert all(u.code == target for n in world.nodes.values() if n.site == "two"
               for u in n.units.values())  # fmt: skip
    # every restore checked its dump's sha256 first, as the journal recorded it
    restores = [e for e in engine.history
                if isinstance(e, ev.StepStarted) and e.step.endswith("db-restore")]  # fmt: skip
    assert len(restores) == 5 and all("sha256sum -c" in (e.command or "") for e in restores)
    # the computes are back in the scheduler, on the source's code
    assert not any(r.disabled_reason for r in world.services if r.site == "one")


async def test_one_phase_and_a_tampered_dump(tmp_path: Path) -> None:
    h, header, events = await _upgraded(tmp_path)
    target = h.inventory.upgrade.target
    plan = build_rollback_plan(h.inventory, header, events,
                               RollbackRequest("up", "one", "image"))  # fmt: skip
    assert {s.id.split("/")[2].split("-")[0] for s in plan.steps} == {"image"}
    dump = next(e.file for e in events if isinstance(e, ev.BackupTaken) and e.service == "glance")
    ctl = h.lab.world.nodes["one-ctl1"]
    ctl.files[dump] += "-- edited\n"
    engine = Engine(plan, h.inventory, h.lab.executor(), OPTIONS)
    outcome = await drive(Harness(h.inventory, plan, h.lab, engine, EngineClient(engine, {})),
                          abort_at_failure)  # fmt: skip
    assert outcome == "aborted"
    failed = [e for e in engine.history if isinstance(e, ev.StepFinished) and e.outcome == "failed"]
    assert [e.step.rsplit("/", 1)[-1] for e in failed] == ["glance.db-restore"]
    assert h.lab.world.databases[("one", "glance")].schema == target  # nothing restored
    said = [line for e in engine.history if isinstance(e, ev.StepOutput)
            and e.step == failed[0].step for line in e.lines]  # fmt: skip
    assert f"{dump}: FAILED" in said


def test_what_cannot_be_rolled_back_is_refused(small_inventory: Any) -> None:
    """Refused before anything is planned, in one line each: no journal events needed."""
    from rollgate.core.plan import build_plan

    header = {"run_id": "up", "inventory_digest": small_inventory.digest,
              "plan": build_plan(small_inventory).to_dict()}  # fmt: skip
    with pytest.raises(UserError, match="no site 'nowhere' in run up"):
        build_rollback_plan(small_inventory, header, [], RollbackRequest("up", "nowhere"))
    with pytest.raises(UserError, match="the inventory changed since run up"):
        changed = dataclasses.replace(small_inventory, digest="0" * 64)
        build_rollback_plan(changed, header, [], RollbackRequest("up", "one"))
    with pytest.raises(UserError, match="did not start any phase at two: nothing to roll back"):
        build_rollback_plan(small_inventory, header, [], RollbackRequest("up", "two"))
    with pytest.raises(UserError, match="was a dry run: it changed nothing to roll back"):
        build_rollback_plan(small_inventory, {**header, "dry_run": True}, [],
                            RollbackRequest("up", "one"))  # fmt: skip
    kolla = parse_inventory((Path(__file__).with_name("kolla.yaml")).read_text(), "kolla.yaml")
    with pytest.raises(UserError, match="kolla-ansible does not support downgrades"):
        build_rollback_plan(kolla, header, [], RollbackRequest("up", "one"))


def test_the_dry_run_prints_the_plan_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = SMALL.read_text().replace("time_scale: 0", f"time_scale: 0\n  state_dir: {tmp_path}/lab")
    inventory = tmp_path / "small.yaml"
    inventory.write_text(text)
    journal = tmp_path / "up.jsonl"
    state = tmp_path / "state"
    up = rollgate(state, "run", str(inventory), "--headless", "--auto-approve", "--lab-inprocess",
                  "--journal", str(journal))  # fmt: skip
    assert up.returncode == 0, up.stderr
    shown = rollgate(state, "rollback", str(journal), "--site", "two", "--dry-run")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("rollback of run ") and "at two: 2025.2 -> 2025.1" in (
        shown.stdout
    )
    assert "apt-get install -y --allow-downgrades" in shown.stdout
    assert "mysql --host=localhost <" in shown.stdout
    refused = rollgate(state, "rollback", str(journal), "--site", "hub", "--phase", "image",
                       "--dry-run")  # fmt: skip
    assert refused.returncode == 2
    assert "did not start its image phase at hub: nothing to roll back there" in refused.stderr
    # and run: its own journal, whose change record says what it undid
    done = rollgate(state, "rollback", str(journal), "--site", "two", "--headless",
                    "--auto-approve", "--lab-inprocess")  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    back = done.stdout.rsplit("journal: ", 1)[1].split()[0]
    report = rollgate(state, "report", back).stdout
    assert report.startswith("# Rollback of small at two: 2025.2 -> 2025.1 (undoes its phases")
    # `rollgate run INVENTORY --resume ROLLBACK` rebuilds the rollback's plan from its header
    from rollgate.core.inventory import load_inventory
    from rollgate.core.journal import read_header
    from rollgate.core.session import RunOptions, plan_for

    monkeypatch.setenv("ROLLGATE_STATE_DIR", str(state))
    resumed = plan_for(load_inventory(inventory), RunOptions(resume=back))
    assert resumed.digest == read_header(back)["plan_digest"]
