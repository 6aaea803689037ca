"""The scheduler: the plan's waves in order; the phases of a wave site by site, up to the
policy's site concurrency; stages in order; inside a stage each node's steps in order and the
nodes at once. It keeps the failure budget of rolling stages, opens the failure, canary and
failures gates, and at a resume asks about the steps a stopped driver left running."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from itertools import groupby
from typing import Any

from rollgate.core import events as ev
from rollgate.core.engine.gates import Gates
from rollgate.core.engine.intake import Intake
from rollgate.core.engine.options import BEFORE_WINDOW, BUDGET_STAGES, DATA_PLANE_STAGES
from rollgate.core.engine.record import Halted, Record
from rollgate.core.engine.steps import StepRunner
from rollgate.core.plan import Phase, Plan, Stage, Step
from rollgate.core.roles import ROLES
from rollgate.core.state import FINISHED_OK, RunState
from rollgate.core.words import STEP_FAILED, STEP_OK, phase_word


class Scheduler:
    def __init__(self, plan: Plan, record: Record, intake: Intake, gates: Gates, steps: StepRunner):
        self.plan = plan
        self.record = record
        self.intake = intake
        self.gates = gates
        self.steps = steps
        self._plan_steps = {s.id: s for s in plan.steps}
        stage_kind = {st.id: st.kind for p in plan.phases for st in p.stages}
        # the failure budget spent so far, per phase: data-plane steps left failed
        self._phase_failures: dict[str, int] = {}
        for step in self.state.steps.values():
            if step.status in ("failed", "timed_out", "unreachable") and (
                stage_kind.get(step.stage) in BUDGET_STAGES
            ):
                self._phase_failures[step.phase] = self._phase_failures.get(step.phase, 0) + 1

    @property
    def state(self) -> RunState:
        return self.record.state

    async def run(self, resumed: bool) -> None:
        """Drive the plan to its end; raises Halted when the run ends early."""
        if resumed:
            await self._settle_interrupted()
        window_asked = False
        for _, wave in groupby(self.plan.phases, key=lambda p: p.wave):
            phases = list(wave)
            if not window_asked and any(p.tier not in BEFORE_WINDOW for p in phases):
                window_asked = True  # a preparation may run before the window; no more
                prepared = any(p.tier == "prepare" for p in self.plan.phases)
                await self.gates.window_start(prepared=prepared)
                self.intake.check()
            limit = asyncio.Semaphore(self.plan.policy.get("site_concurrency", 1))
            await self._all(self._phase(p, limit) for p in phases)

    async def _all(self, branches: Iterable[Coroutine[Any, Any, None]]) -> None:
        """Run branches together and wait for every one of them to end. A branch the run's
        ending unwinds ends quietly; a branch that fails (a bug) halts the run, and the others
        unwind at their next step. Then, if the run is ending, raise Halted."""

        async def branch(coroutine: Coroutine[Any, Any, None]) -> None:
            try:
                await coroutine
            except Halted:
                pass
            except Exception as exc:
                self.intake.fail(f"engine error: {type(exc).__name__}: {exc}")

        async with asyncio.TaskGroup() as group:
            for coroutine in branches:
                group.create_task(branch(coroutine))
        self.intake.check()

    # ---------------------------------------------------------------- resume

    async def _settle_interrupted(self) -> None:
        for step in [s for s in self.state.steps.values() if s.status == "interrupted"]:
            planned = self._plan_steps[step.id]
            why = await self.steps.follow_interrupted(planned, step.attempts)
            if not why:
                continue  # the node told how it ended: settled without asking
            decision, comment = await self.gates.ask(
                f"gate:interrupted:{step.id}:{self.record.seq}",
                "interrupted",
                f"'{planned.title}' was running on {step.node} when the run stopped, and {why}: "
                "run it again, or mark it done if you checked it finished?",
                summary=self.gates.summary_before(f"decide about '{planned.title}' on {step.node}"),
                options=("rerun", "mark-done", "abort"),
                step=step.id,
            )
            if decision == "mark-done":
                self.record.emit(
                    ev.StepFinished,
                    step=step.id,
                    attempt=step.attempts,
                    outcome="ok",
                    error=f"marked done by the operator: {comment}".rstrip(": "),
                )

    # ---------------------------------------------------------------- phases and stages

    async def _phase(self, phase: Phase, limit: asyncio.Semaphore) -> None:
        if all(self.state.steps[s.id].done for s in phase.steps):
            return
        async with limit:
            if self.intake.stop:
                return
            try:
                await self.gates.window_over(phase)
                await self.gates.plan_gate(
                    phase.gate,
                    self.gates.summary_before(
                        f"{phase.title} at {phase.site}: {len(phase.steps)} steps"
                    )
                    + self.gates.estimate_past_window(),
                )
                self.record.emit(ev.PhaseStarted, phase=phase.id)
                canary = [st for st in phase.stages if st.kind == "canary"] or None
                data_plane_ran = False
                for stage in phase.stages:
                    if stage.kind in DATA_PLANE_STAGES:
                        data_plane_ran = True
                    elif stage.kind == "post" and data_plane_ran:
                        # nodes that failed within the budget are decided before anything
                        # that assumes the data plane moved (the restarts that drop the RPC
                        # pin, online migrations): retried, or skipped with their steps here
                        await self._phase_failures_gate(phase)
                        data_plane_ran = False
                    if canary is not None and stage.kind == "batch":
                        await self._canary_verdict(phase, canary, stage)
                        canary = None  # asked once, before the first batch
                        await self._stage(phase, stage, gated=True)
                    else:
                        await self._stage(phase, stage)
                await self._phase_failures_gate(phase)
            except Halted:
                self.record.emit(ev.PhaseFinished, phase=phase.id, outcome=self._halted_word())
                raise
            word = phase_word(self.state.steps[s.id].status for s in phase.steps)
            self.record.emit(ev.PhaseFinished, phase=phase.id, outcome=word)

    def _halted_word(self) -> str:
        """How a phase the run's ending cut short ended."""
        return "aborted" if self.intake.stop == "aborted" else "stopped"

    async def _canary_verdict(self, phase: Phase, canary: list[Stage], batch: Stage) -> None:
        """Before the first batch: the canary gate claims the canary is upgraded only when
        every step of its stages finished ok; otherwise the operator must say, knowingly,
        whether the batches go on (never --auto-approve)."""
        steps = [self.state.steps[s.id] for stage in canary for s in stage.steps]
        if all(s.status in STEP_OK for s in steps):
            await self.gates.plan_gate(batch.gate, self.gates.summary_before(batch.title))
            return
        not_ok = [s for s in steps if s.status not in STEP_OK]
        nodes = sorted({s.node for s in not_ok})
        what = "; ".join(
            f"{self._plan_steps[s.id].title} on {s.node}: {s.status}"
            + (f" ({s.error})" if s.error else "")
            for s in not_ok[:5]
        )
        await self.gates.ask(
            f"gate:{phase.id}/canary-not-upgraded:{self.record.seq}",
            "canary",
            f"the canary {', '.join(nodes)} at {phase.site} was NOT upgraded ({what}): "
            "start the batches anyway?",
            summary=self.gates.summary_before(batch.title),
            automatic=False,
        )

    async def _stage(self, phase: Phase, stage: Stage, *, gated: bool = False) -> None:
        if all(self.state.steps[s.id].done for s in stage.steps):
            return
        if not gated:
            await self.gates.plan_gate(stage.gate, self.gates.summary_before(stage.title))
        self.record.emit(ev.StageStarted, stage=stage.id)
        lanes: dict[str, list[Step]] = {}
        for step in stage.steps:
            lanes.setdefault(step.node, []).append(step)
        await self._all(self._lane(phase, stage.kind, steps) for steps in lanes.values())
        word = phase_word(self.state.steps[s.id].status for s in stage.steps)
        self.record.emit(ev.StageFinished, stage=stage.id, outcome=word)

    # ---------------------------------------------------------------- one node's steps

    async def _lane(
        self, phase: Phase, stage_kind: str, steps: list[Step], *, retry: bool = False
    ) -> None:
        """One node's steps in order.

        A failure in a batch or network stage counts against the phase's failure budget:
        within it, this node stays failed and the others go on (the phase's failures gate
        decides at its end); past it, a failure gate opens and no new step starts in the phase
        until it is decided. Anywhere else (control plane, canary) a failure gate opens at
        once. Skipping a data-plane step skips the node's remaining steps in the phase too
        (the final restarts included), leaving it fenced; skipping a control-plane step skips
        that step only.

        A step found failed when the lane starts failed under an earlier driver (`retry`
        False) or is being retried (`retry` True): it is never run again by itself.
        """
        # a deploy host's step in a batch (a method's tool run for the batch) is not a
        # data-plane node: its failure is asked about at once, and skipping it skips that
        # step only
        role = ROLES.get(steps[0].role) if steps else None
        data_plane = stage_kind in DATA_PLANE_STAGES and role is not None and role.data_plane
        budgeted = stage_kind in BUDGET_STAGES and data_plane
        for step in steps:
            status = self.state.steps[step.id].status
            if status in FINISHED_OK:
                continue
            counted = False  # whether this failure is in the budget already (from the journal)
            if status in ("failed", "timed_out", "unreachable") and not retry:
                if budgeted and not self._gate_left_open(step.id):
                    return  # left failed within the budget: the phase's failures gate asks
                outcome, counted = status, True  # ask its failure gate again
            else:
                outcome = await self.steps.run(step)
            while outcome not in FINISHED_OK:
                if budgeted:
                    if not counted:
                        self._phase_failures[phase.id] = self._phase_failures.get(phase.id, 0) + 1
                    counted = False
                    spent = self._phase_failures[phase.id]
                    budget = int(self.plan.policy.get("failure_budget", 0))
                    if spent <= budget:
                        return  # within budget: this node stays failed, the others go on
                    self.intake.holds[phase.id] = self.intake.holds.get(phase.id, 0) + 1
                    try:
                        decision = await self.gates.failure(
                            step,
                            f"failure budget spent at {phase.site}: {spent} failed nodes "
                            f"(budget {budget}); no new step starts in this phase until decided",
                            self._would_skip(phase, step, data_plane),
                        )
                    finally:
                        self.intake.holds[phase.id] -= 1
                        self.intake.wake()
                    self._phase_failures[phase.id] -= 1
                else:
                    why = "the canary failed" if stage_kind == "canary" else "a step failed"
                    decision = await self.gates.failure(
                        step, why, self._would_skip(phase, step, data_plane)
                    )
                if decision[0] == "skip":
                    for each in self._would_skip(phase, step, data_plane):
                        if not self.state.steps[each.id].done:
                            self.record.emit(
                                ev.StepFinished,
                                step=each.id,
                                attempt=self.state.steps[each.id].attempts,
                                outcome="skipped",
                                error=f"skipped: {decision[1]}"
                                if each is step
                                else f"skipped with '{step.title}': {decision[1]}",
                            )
                    if data_plane:
                        return
                    break
                outcome = await self.steps.run(step)  # retry

    def _would_skip(self, phase: Phase, step: Step, data_plane: bool) -> list[Step]:
        """What skipping a failed step skips: on a data-plane node its steps left in the phase
        (it stays as it is, fenced), on the control plane that step only."""
        if not data_plane:
            return [step]
        rest = [
            s
            for s in phase.steps
            if s.node == step.node and s is not step and not self.state.steps[s.id].done
        ]
        return [step, *rest]

    def _gate_left_open(self, step_id: str) -> bool:
        """Whether a failure gate about this step was open, undecided, when a driver stopped."""
        return any(
            g.step == step_id and g.kind == "failure" and g.decision is None
            for g in self.state.gates
        )

    async def _phase_failures_gate(self, phase: Phase) -> None:
        """Nodes that failed within the budget: retry them, skip them, or abort."""
        while True:
            # not "interrupted": a step a stopped driver left running was asked about when
            # the run resumed (run again by its stage, or marked done), it did not fail
            failed = [
                s
                for s in phase.steps
                if not self.state.steps[s.id].done
                and self.state.steps[s.id].status not in ("pending", "interrupted")
            ]
            if not failed:
                return
            nodes = sorted({s.node for s in failed})
            broken = [s for s in failed if self.state.steps[s.id].status in STEP_FAILED]
            left = sum(
                1 for s in phase.steps if s.node in nodes and not self.state.steps[s.id].done
            )
            decision, reason = await self.gates.ask(
                f"gate:failures:{phase.id}:{self.record.seq}",
                "failure",
                f"{len(nodes)} node(s) failed in {phase.title} at {phase.site}: "
                f"{', '.join(nodes[:10])}; retry them, skip them (with a reason), or abort?",
                summary=self.gates.failure_detail(broken)
                + "\n"
                + self.gates.summary_before("the rest of the phase"),
                options=("retry", "skip", "abort"),
                choices=(
                    f"retry: run the failed step of each of the {len(nodes)} node(s) again, "
                    "then their remaining steps in this phase",
                    f"skip (with a reason): the {left} step(s) those nodes have left in this "
                    "phase are not run; they stay as they are now (a fenced compute stays "
                    "disabled in the scheduler), not upgraded",
                    self.gates.abort_choice(),
                ),
            )
            self._phase_failures[phase.id] = 0
            if decision == "skip":
                for node in nodes:
                    for step in phase.steps:
                        if step.node == node and not self.state.steps[step.id].done:
                            self.record.emit(
                                ev.StepFinished,
                                step=step.id,
                                attempt=self.state.steps[step.id].attempts,
                                outcome="skipped",
                                error=f"skipped: {reason}",
                            )
                return
            await self._retry_failed(phase, nodes)

    async def _retry_failed(self, phase: Phase, nodes: list[str]) -> None:
        """Each failed node's steps left in the phase, again: its failed step first."""
        lanes: dict[str, tuple[str, list[Step]]] = {}
        for stage in phase.stages:
            for step in stage.steps:
                if step.node in nodes and not self.state.steps[step.id].done:
                    key = f"{stage.id}/{step.node}"
                    lanes.setdefault(key, (stage.kind, []))[1].append(step)
        await self._all(
            self._lane(phase, kind, steps, retry=True) for kind, steps in lanes.values()
        )
