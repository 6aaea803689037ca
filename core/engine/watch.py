"""The watch: what a finished phase moved stays watched until the run ends.

Every watch interval, each site with a finished phase is asked what answers (the executor's
`watch_health`: each API its catalog lists, each service record and agent those APIs list).
Something of a finished phase that stops answering is journalled (ServiceDown) and opens an
outage gate naming it, holding every new step until an operator decides: go on (the outage
stays watched, and the final verification counts what is still down), stop the run here, or
abort. What answers again is journalled too (ServiceUp); the report gives each outage's time.

An API is watched from the end of the phase that moved its service; a service record or
agent from the first probe after its node's phase, and only if it answered then (one already
down, e.g. a compute an operator left out, is the final verification's to report).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from rollgate.core import events as ev
from rollgate.core.engine.gates import Gates
from rollgate.core.engine.intake import Intake
from rollgate.core.engine.record import Halted, Record
from rollgate.core.executor import Executor, SlowAnswer, Stopped, within
from rollgate.core.inventory import Inventory
from rollgate.core.plan import Plan, Step
from rollgate.core.roles import API_SERVICE_TYPES, ROLES
from rollgate.core.state import RunState

PROBE_TIMEOUT = 60.0  # seconds one site's probes may take before this turn gives up on them
MOVED_WORDS = ("ok", "ok with deviations")  # phases whose services are watched


class Watcher:
    def __init__(
        self,
        plan: Plan,
        inventory: Inventory,
        executor: Executor,
        record: Record,
        intake: Intake,
        gates: Gates,
        interval: float,
        probe_timeout: float = PROBE_TIMEOUT,
    ):
        self.plan = plan
        self.sites = {s.name: s for s in inventory.sites}
        self.identity_site = inventory.identity_site
        self.executor = executor
        self.record = record
        self.intake = intake
        self.gates = gates
        self.interval = interval
        self.probe_timeout = probe_timeout
        self.baseline: dict[tuple[str, str], bool] = {}  # (site, record) -> up when first seen
        self._gates: set[asyncio.Task[None]] = set()
        self._watched: tuple[tuple[str, ...], dict[str, dict[str, str]]] | None = None
        self._map: WatchMap | None = None  # made at the first look

    def watched(self) -> dict[str, dict[str, str]]:
        """What is watched now; worked out again only when a phase's word changed (it reads
        every step of the plan: at 10,000 nodes, each look of the watch did)."""
        phases = tuple(self.record.state.phases.values())
        if self._watched is None or self._watched[0] != phases:
            if self._map is None:
                self._map = WatchMap(self.plan, self.identity_site)
            self._watched = (phases, self._map.watched(self.record.state))
        return self._watched[1]

    async def run(self, done: asyncio.Event) -> None:
        health: Any = getattr(self.executor, "watch_health", None)
        if health is None or self.interval <= 0:
            return
        try:
            while not done.is_set():
                try:
                    await within(asyncio.sleep(self.interval), None, done)
                except Stopped:
                    return
                for site, watched in self.watched().items():
                    if done.is_set() or site not in self.sites:
                        return
                    try:
                        answers = await within(health(self.sites[site]), self.probe_timeout, done)
                    except Stopped:
                        return
                    except (TimeoutError, SlowAnswer):  # slow is not down: not judged now
                        continue
                    except Exception as exc:  # the probe itself failed: the site's APIs
                        answers = {"the identity API": f"no answer ({type(exc).__name__})"}
                    self._judge(site, watched, answers)
        finally:
            for task in list(self._gates):
                task.cancel()

    def _judge(self, site: str, watched: dict[str, str], answers: dict[str, str | None]) -> None:
        if self.record.closed:
            return
        open_now = {(o.site, o.what) for o in self.record.state.outages if o.until is None}
        for what, why in answers.items():
            binary, _, host = what.partition(" on ")  # "nova-compute on cmp1"
            phase = watched.get(what) or watched.get(f"@{host}:{binary.split('-', 1)[0]}")
            if phase is None:
                continue
            if not what.startswith("the "):  # a service record or agent: from its baseline
                first = self.baseline.setdefault((site, what), why is None)
                if not first:
                    continue
            down = (site, what) in open_now
            if why is not None and not down:
                self.record.emit(ev.ServiceDown, site=site, what=what, detail=why, phase=phase)
                self._ask(site, what, why, phase)
            elif why is None and down:
                self.record.emit(ev.ServiceUp, site=site, what=what)

    def _ask(self, site: str, what: str, why: str, phase: str) -> None:
        """Hold every new step and open the outage gate (in the background: the watch goes
        on probing meanwhile)."""
        self.intake.outage_holds += 1
        self.intake.wake()

        async def ask() -> None:
            since = time.strftime("%H:%M:%S", time.localtime(self.record.clock()))
            try:
                decision, _ = await self.gates.ask(
                    f"gate:outage:{site}:{what.replace(' ', '-')}:{self.record.seq}",
                    "outage",
                    f"{what} at {site} stopped answering after {phase} finished ({why}, "
                    f"since {since}): go on with it down, stop the run here, or abort?",
                    summary=self._summary(site, what, why, phase),
                    options=("approve", "reject", "abort"),
                    automatic=False,
                    choices=(
                        f"approve: go on; {what} stays watched and its downtime recorded, and "
                        "the final verification reports it if it is still down",
                        "reject: start nothing more: the run stops here, resumable once it "
                        "answers again",
                        self.gates.abort_choice(),
                    ),
                )
                if decision == "reject":
                    self.intake.halt("stopped")
            except Halted:
                pass
            finally:
                self.intake.outage_holds -= 1
                self.intake.wake()

        task = asyncio.get_running_loop().create_task(ask())
        self._gates.add(task)
        task.add_done_callback(self._gates.discard)

    def _summary(self, site: str, what: str, why: str, phase: str) -> str:
        finished = [
            s.finished
            for s in self.record.state.steps.values()
            if s.phase == phase and s.finished is not None
        ]
        lines = [f"{what} at {site}: {why}"]
        if finished:
            at = time.strftime("%H:%M:%S", time.localtime(max(finished)))
            lines.append(f"{phase} finished at {at}; its checks passed then")
        lines.append(
            "read its service's log on its nodes; the watch journals when it answers again"
        )
        return "\n".join(lines)


def watched(plan: Plan, state: RunState, identity_site: str) -> dict[str, dict[str, str]]:
    """site -> {what is watched there: the phase that moved it}, from finished phases: an
    API once no phase still to finish has steps of its service's API role, a node's service
    records and agents ("@NODE:SERVICE") once no such phase has steps of that service on
    that node (a compute being upgraded is down on purpose). A phase still to finish also
    holds what shares a unit with what it moves on a node (apt's apache2 runs keystone,
    placement, cinder-api and horizon: cinder's phase stopping it stops placement's API)."""
    return WatchMap(plan, identity_site).watched(state)


class WatchMap:
    """What each phase of a plan moves and holds, worked out once (it reads every step of the
    plan: at 10 x 1,000 computes a third of a second each time a phase's word changed)."""

    def __init__(self, plan: Plan, identity_site: str):
        from rollgate.core.methods import method

        unit_of = method(plan.method).unit
        sharing: dict[tuple[str, str], set[str]] = {}  # (node, unit) -> the roles it runs
        for step in plan.steps:
            if step.role in ROLES:
                sharing.setdefault((step.node, unit_of(step.role)), set()).add(step.role)
        # phase -> what it moves (in order) and what it holds while it is still to finish
        self.phases: list[tuple[str, list[tuple[str, str]], set[tuple[str, str]]]] = []
        for phase in plan.phases:
            if phase.tier in ("scope", "verify"):  # they read; they move nothing
                continue
            moves: dict[tuple[str, str], None] = {}
            holds: set[tuple[str, str]] = set()
            for step in phase.steps:
                moves.update(dict.fromkeys(_keys(step, identity_site)))
                roles = sharing.get((step.node, unit_of(step.role)), set()) | {step.role}
                for role in roles:
                    holds.update(_keys(step, identity_site, role))
            self.phases.append((phase.id, list(moves), holds))

    def watched(self, state: RunState) -> dict[str, dict[str, str]]:
        moved: list[tuple[str, list[tuple[str, str]]]] = []
        busy: set[tuple[str, str]] = set()
        for phase_id, moves, holds in self.phases:
            if state.phases.get(phase_id) in MOVED_WORDS:
                moved.append((phase_id, moves))
            else:
                busy |= holds
        out: dict[str, dict[str, str]] = {}
        for phase_id, moves in moved:  # a later phase's move of the same thing stands
            for site, what in moves:
                if (site, what) not in busy:
                    out.setdefault(site, {})[what] = phase_id
        return out


def _keys(step: Step, identity_site: str, role: str = "") -> list[tuple[str, str]]:
    """(site, what) a step's move stands for (or, with `role`, that role's on the step's
    node): its API and its node's service."""
    role = role or step.role
    keys = []
    kind = API_SERVICE_TYPES.get(role)
    if kind is not None:
        keys.append((identity_site if kind == "identity" else step.site, f"the {kind} API"))
    if role in ROLES:
        keys.append((step.site, f"@{step.node}:{ROLES[role].service}"))
    return keys
