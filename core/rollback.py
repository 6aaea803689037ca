"""`rollgate rollback`: the way back for a site, planned per method from what a run's journal
says it did (the phases that started, the backups they took, the versions recorded before
anything moved) and run as a run of its own, with its gates and journal.

Per phase, the last first: stop the phase's programs on every node it touched; the method puts
their code back (apt: the source pocket, each package downgraded to its recorded version; the
virtualenv method: nothing yet, each program's link moves back at its restart); every database
the phase backed up is restored from its dump (its sha256 checked first); each program restarts
on the source's code and is read back as any restart is (its running code, its API, its
heartbeat), then the source's own status check. kolla-ansible does not support downgrades: the
kolla method refuses, naming its database restore.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from rollgate.core import events as ev
from rollgate.core.errors import UserError
from rollgate.core.inventory import Inventory, Node
from rollgate.core.methods import method
from rollgate.core.plan import (
    Gate,
    Phase,
    PhaseBuilder,
    Plan,
    PlanContext,
    agents_up,
    compute_back,
    plan_digest,
)
from rollgate.core.plan_checks import after_restart
from rollgate.core.recipes import load_recipe
from rollgate.core.releases import UpgradePath
from rollgate.core.roles import AGENT_ORDER, API_SERVICE_TYPES, HEARTBEAT_ROLES, ROLES
from rollgate.core.state import fold

# the tiers a rollback can undo (the preparation moved nothing that runs; verify read only)
UNDOABLE = ("identity", "image", "compute", "block-storage", "dashboard")
TITLE = "Roll back"


@dataclass(frozen=True)
class RollbackRequest:
    """What to undo: `run`'s phases at `site` (every one that started, or the `phase` tier)."""

    run: str  # the run id, as `rollgate runs` lists it (for the header and the report)
    site: str
    phase: str | None = None


def reversed_inventory(inventory: Inventory) -> Inventory:
    """The inventory with its upgrade turned around: the recipe's `to` is the source release
    (the virtualenv its programs go back to, the pocket, the versions the checks expect)."""
    up = inventory.upgrade
    return dataclasses.replace(inventory, upgrade=UpgradePath(up.target, up.source))


def build_rollback_plan(
    inventory: Inventory,
    header: dict[str, Any],
    events: list[ev.Event],
    request: RollbackRequest,
) -> Plan:
    """The rollback of `request.site`'s phases of the run whose journal is `header`+`events`;
    one line naming what to fix when it cannot be planned safely."""
    refusal = method(inventory.method).rollback_refusal
    if refusal:
        raise UserError(f"the {inventory.method} method cannot roll back: {refusal}")
    run = str(header.get("run_id", request.run))
    if header.get("inventory_digest") != inventory.digest:
        raise UserError(
            f"the inventory changed since run {run} (digest "
            f"{str(header.get('inventory_digest'))[:12]} -> {inventory.digest[:12]}): roll back "
            "with the inventory as it was"
        )
    if header.get("dry_run"):
        raise UserError(f"run {run} was a dry run: it changed nothing to roll back")
    if header.get("rollback"):
        raise UserError(f"run {run} is itself a rollback: roll back the upgrade run instead")
    if request.site not in {s.name for s in inventory.sites}:
        names = ", ".join(s.name for s in inventory.sites)
        raise UserError(f"no site {request.site!r} in run {run} (sites: {names})")
    original = Plan.from_dict(header["plan"])
    state = fold(original, events)
    phases = [
        p for p in original.phases
        if p.site == request.site and p.tier in UNDOABLE
        and state.phases.get(p.id, "pending") != "pending"
        and (request.phase is None or p.tier == request.phase)
    ]  # fmt: skip
    if not phases:
        what = f"its {request.phase} phase" if request.phase else "any phase"
        raise UserError(
            f"run {run} did not start {what} at {request.site}: nothing to roll back there "
            f"(phases that started: {', '.join(_started(original, state)) or 'none'})"
        )
    backups = [e for e in events if isinstance(e, ev.BackupTaken)]
    before = _versions_before(events)
    back = reversed_inventory(inventory)
    ctx = PlanContext(back, load_recipe(inventory.method))
    site = back.site(request.site)
    b = PhaseBuilder(ctx, "rollback", site)
    for phase in reversed(phases):
        _undo(b, phase, state, backups, before)
    built = b.build(f"{TITLE} to {back.upgrade.target.id}")
    if built is None:  # no step: nothing the phases did could be undone by this method
        raise UserError(f"nothing of run {run}'s phases at {request.site} can be rolled back")
    gate = Gate(  # always asked: --auto-approve answers it, as any phase gate
        f"gate:{b.id}",
        "phase",
        f"roll {site.name} back to {back.upgrade.target.id} (undo "
        f"{', '.join(p.tier for p in reversed(phases))} of run {run})?",
    )
    rolled = dataclasses.replace(built, gate=gate)
    plan = Plan(
        cloud=inventory.cloud,
        method=inventory.method,
        source=inventory.upgrade.target.id,
        target=inventory.upgrade.source.id,
        skip_level=False,
        inventory_digest=inventory.digest,
        policy=dict(original.policy),
        phases=(rolled,),
    )
    ids = [s.id for s in plan.steps]
    if len(ids) != len(set(ids)):  # a bug in this builder, never the user's input
        raise AssertionError(f"duplicate step ids: {sorted(i for i in ids if ids.count(i) > 1)}")
    return dataclasses.replace(plan, digest=plan_digest(plan))


def _started(plan: Plan, state: Any) -> list[str]:
    return [p.id for p in plan.phases if state.phases.get(p.id, "pending") != "pending"]


def _versions_before(events: list[ev.Event]) -> dict[str, dict[str, str]]:
    """node -> {package: the version read before the run moved it}."""
    out: dict[str, dict[str, str]] = {}
    for e in events:
        if isinstance(e, ev.NodeStatus) and e.version_before and e.package:
            out.setdefault(e.node, {})[e.package] = e.version_before
    return out


def _touched(phase: Phase, state: Any, inventory: Inventory) -> list[tuple[Node, list[str]]]:
    """Each node a step of the phase ran on, with the phase's roles on it, in the phase's
    order (controllers before computes, as the phase had them)."""
    seen: dict[str, set[str]] = {}
    for step in phase.steps:
        if step.role in ROLES and state.steps[step.id].status != "pending":
            seen.setdefault(step.node, set()).add(step.role)
    out = []
    for name, roles in seen.items():
        node = inventory.node(name)
        mine = [r for r in node.roles if r in roles and ROLES[r].tier == phase.tier]
        if mine:
            out.append((node, mine))
    return out


def _undo(
    b: PhaseBuilder,
    phase: Phase,
    state: Any,
    backups: list[ev.BackupTaken],
    before: dict[str, dict[str, str]],
) -> None:
    """One phase's way back: stop, code back, restore, restart and read back, check."""
    inventory = b.ctx.inventory
    touched = _touched(phase, state, inventory)
    steps = {s.id for s in phase.steps}
    taken = [e for e in backups if e.step in steps and e.file]
    tier, source = phase.tier, inventory.upgrade.target.id
    m = b.ctx.method
    b.stage(f"{tier}-stop", f"stop what the {tier} phase moved", "pre")
    for node, roles in touched:
        for unit, role in {m.unit(r): r for r in roles}.items():
            b.add("stop", node, role, unit=unit)
    b.stage(f"{tier}-code", f"the {source} code back on the {tier} phase's nodes", "pre")
    for node, roles in touched:
        m.hooks.rollback_code(b, node, roles[0], roles, before.get(node.name, {}))
    if taken:
        b.stage(f"{tier}-restore", f"restore the {tier} phase's databases from the run's dumps",
                "pre")  # fmt: skip
        for backup in taken:
            holder = inventory.node(backup.node)
            found = [r for r in holder.roles if r in ROLES and ROLES[r].service == backup.service]
            if not found:
                continue
            args = {"file": backup.file, "sha256": backup.sha256,
                    "databases": list(backup.databases)}  # fmt: skip
            b.add(
                "db-restore",
                holder,
                found[0],
                args=args,
                service=backup.service,
                file=backup.file,
                checksum=backup.sha256,
            )
    b.stage(f"{tier}-start", f"start the {tier} phase's programs on {source}", "post")
    for node, roles in touched:
        for unit, role in {m.unit(r): r for r in roles}.items():
            b.add("restart", node, role, unit=unit)
        b.restarted(node, roles[0])  # apt: package scripts may restart services again
        after_restart(b, node, roles, heartbeats=any(r in HEARTBEAT_ROLES for r in roles))
        agents = [a for a in AGENT_ORDER if a in roles]
        if agents and "nova-compute" in roles:  # a compute's agents, as its batch saw them
            agents_up(b, node, agents)
        if "nova-compute" in roles:
            compute_back(b, node)  # its heartbeat after the restart, then back in service
    services: dict[str, tuple[Node, str]] = {}  # each service's check where it first ran
    for node, roles in touched:
        for r in roles:
            if r in API_SERVICE_TYPES or (r in HEARTBEAT_ROLES and not ROLES[r].data_plane):
                services.setdefault(ROLES[r].service, (node, r))
    if services:
        b.stage(f"{tier}-check", f"the {tier} phase's services pass {source}'s own checks",
                "post")  # fmt: skip
        for node, role in services.values():
            b.add("status-check", node, role)
