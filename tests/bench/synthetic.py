"""A realistic large run, synthesised from a real plan: the events the engine would emit.

Steps run a batch at a time per stage (the plan's own stages), each step printing output in
several batches, as a long package upgrade does; gates open and are approved at every phase.
Used for the journal, replay and console benchmarks where a real run of that size would take
too long to produce.
"""

from __future__ import annotations

from collections.abc import Iterator

from rollgate.core import events as ev
from rollgate.core.plan import Plan

APT_LINES = (
    "Reading package lists...",
    "Building dependency tree...",
    "Unpacking nova-compute (3:31.0.0-0ubuntu1) over (3:30.0.0-0ubuntu1) ...",
    "Setting up nova-common (3:31.0.0-0ubuntu1) ...",
    "Processing triggers for man-db (2.12.0-4build2) ...",
)


def synthetic_events(
    plan: Plan, *, outputs_per_step: int = 10, concurrency: int = 100, limit: int | None = None
) -> Iterator[ev.Event]:
    """Events of a successful run of `plan`, with timestamps 10 ms apart; stops at `limit`."""
    seq = 0
    clock = 1_790_000_000.0

    def make(cls: type[ev.Event], **fields: object) -> ev.Event:
        nonlocal seq, clock
        seq += 1
        clock += 0.01
        return cls(seq=seq, time=round(clock, 3), mono=round(clock - 1_789_990_000, 3), **fields)

    def run() -> Iterator[ev.Event]:
        yield make(ev.RunStarted, run_id="bench", operator="bench", plan_digest=plan.digest)
        for phase in plan.phases:
            gate = f"gate:{phase.id}"
            yield make(ev.GateOpened, gate=gate, kind="phase", title=f"start {phase.title}?")
            yield make(ev.GateDecided, gate=gate, decision="approve", operator="bench")
            yield make(ev.PhaseStarted, phase=phase.id)
            for stage in phase.stages:
                yield make(ev.StageStarted, stage=stage.id)
                steps = list(stage.steps)
                for first in range(0, len(steps), concurrency):
                    batch = steps[first : first + concurrency]
                    for step in batch:
                        yield make(
                            ev.StepStarted,
                            step=step.id,
                            node=step.node,
                            attempt=1,
                            command=step.command,
                        )
                    for n in range(outputs_per_step):
                        for step in batch:
                            yield make(
                                ev.StepOutput,
                                step=step.id,
                                stream="stdout",
                                lines=(APT_LINES[n % len(APT_LINES)], f"{step.node}: {n}"),
                            )
                    for step in batch:
                        yield make(
                            ev.StepFinished,
                            step=step.id,
                            attempt=1,
                            outcome="ok",
                            exit_status=0,
                            duration=1.5,
                        )
                        if step.action == "verify-version":
                            yield make(ev.NodeStatus, node=step.node, version="2025.2")
                yield make(ev.StageFinished, stage=stage.id, outcome="ok")
            yield make(ev.PhaseFinished, phase=phase.id, outcome="ok")
        yield make(ev.RunFinished, outcome="complete")

    for count, event in enumerate(run(), start=1):
        yield event
        if limit is not None and count >= limit:
            return
