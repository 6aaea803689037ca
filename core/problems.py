"""One shape for a node that did not end as planned: a record per step that failed, was skipped
or found a deviation, naming the node, the step, what ran, how it ended, its last output and
who decided what about it. `rollgate status --json`, `report --format json` and the console's
end page use it (README, "Problem records").

    {"node", "site", "node_state", "step", "title", "outcome", "command", "exit_status",
     "error", "last_output": [...], "decision", "decided_by", "comment", "decided_at"}

`decision` is what was decided at the step's last gate (retry, skip, abort; null when none
was); `command` is null for an API call. Every text is masked (core/secrets.py).
"""

from __future__ import annotations

from typing import Any

from rollgate.core.plan import Plan
from rollgate.core.secrets import mask
from rollgate.core.state import GateState, RunState
from rollgate.core.words import STEP_DEVIATION, STEP_FAILED

PROBLEM_OUTCOMES = (*STEP_FAILED, "skipped", STEP_DEVIATION)
LAST_LINES = 5  # output lines a record carries; the journal has them all


BUDGET_GATE = "gate:failures:"  # a phase's failure-budget gate: gate:failures:PHASE:N


def budget_phase(gate_id: str) -> str:
    """The phase whose failure budget a `gate:failures:PHASE:N` gate is about."""
    return gate_id.removeprefix(BUDGET_GATE).rsplit(":", 1)[0]


def problem_records(
    plan: Plan, state: RunState, *, limit: int | None = None
) -> list[dict[str, Any]]:
    """A record per step that did not end as planned, in plan order (at most `limit`)."""
    decided: dict[str, GateState] = {}
    phase_gates: dict[str, list[GateState]] = {}  # a phase's failure-budget gates
    for gate in state.gates:  # the last decided gate of each step
        if gate.decision is None:
            continue
        if gate.step is not None:
            decided[gate.step] = gate
        elif gate.kind == "failure" and gate.id.startswith("gate:failures:"):
            phase_id = budget_phase(gate.id)
            phase_gates.setdefault(phase_id, []).append(gate)
    out: list[dict[str, Any]] = []
    for phase, step in ((p, s) for p in plan.phases for s in p.steps):
        st = state.steps.get(step.id)
        if st is None or st.status not in PROBLEM_OUTCOMES:
            continue
        last = decided.get(step.id) or next(  # else the phase's gate that followed it
            (
                g
                for g in reversed(phase_gates.get(phase.id, []))
                if st.finished is None or g.opened >= st.finished
            ),
            None,
        )
        out.append(
            {
                "node": step.node,
                "site": step.site,
                "node_state": state.nodes[step.node].status if step.node in state.nodes else None,
                "step": step.id,
                "title": step.title,
                "outcome": st.status,
                "command": mask(step.command) if step.command else None,
                "exit_status": st.exit_status,
                "error": mask(st.error),
                "last_output": [mask(line) for line in st.tail[-LAST_LINES:]],
                "decision": last.decision if last else None,
                "decided_by": last.operator if last else None,
                "comment": mask(last.comment) if last and last.comment else "",
                "decided_at": last.decided if last else None,
            }
        )
        if limit is not None and len(out) >= limit:
            break
    return out
