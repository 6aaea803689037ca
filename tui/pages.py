"""The console's pages of text: a node's detail, a step's, the end of the run. Plain text
from the plan and the folded state, shown in a scrolling page (screens/dialogs.py)."""

from __future__ import annotations

from rollgate.core.plan import Plan, Step
from rollgate.core.report import end_summary
from rollgate.core.secrets import mask
from rollgate.core.state import RunState
from rollgate.core.words import GLYPHS, STEP_DEVIATION, STEP_FAILED

NODE_PAGE_LINES = 400


def node_page(plan: Plan, state: RunState, name: str) -> str:
    """The node's state, services and version, then each of its steps; a failed one with the
    command it ran, its exit status and error, and its last output lines."""
    node = state.nodes[name]
    lines = [
        f"site {node.site}   state {node.status}   version {node.version or '?'}"
        f"   scheduler {'disabled' if node.disabled else 'enabled'}",
        "",
    ]
    if node.services:
        lines.insert(
            1, "services: " + ", ".join(f"{k} {v}" for k, v in sorted(node.services.items()))
        )
    for step in plan.steps:
        if step.node != name:
            continue
        st = state.steps[step.id]
        lines.append(f"{GLYPHS.get(st.status, '?')} {st.status:<11} {step.title}")
        if st.status in (*STEP_FAILED, STEP_DEVIATION):  # what ran, and why it failed
            lines.append(f"      runs: {mask(step.command) if step.command else step.action}")
            exit_word = f"exit {st.exit_status}: " if st.exit_status is not None else ""
            lines.append(f"      {exit_word}{st.error}" if st.error or exit_word else "")
            lines += [f"      | {t}" for t in list(st.tail)[-8:]]
            continue
        lines += [f"      {t}" for t in list(st.tail)[-3:]]
    return "\n".join(lines[:NODE_PAGE_LINES])


def step_page(step: Step, state: RunState) -> str:
    """What a step runs (the exact command, before it runs) and how it went."""
    st = state.steps[step.id]
    lines = [
        f"{step.title} on {step.node}",
        f"state {st.status}   attempts {st.attempts}"
        + (f"   exit status {st.exit_status}" if st.exit_status is not None else ""),
        "",
        "runs: " + (step.command or f"{step.executor} API call {step.action} {step.args}"),
    ]
    if st.error:
        lines += ["", st.error]
    if st.tail:
        lines += ["", "last output:", *(f"  {t}" for t in st.tail)]
    return "\n".join(lines)


def end_page(plan: Plan, state: RunState, window: tuple[float, float] | None, run_id: str) -> str:
    """The end of the run: its word's detail, node counts, time against the window,
    deviations, how to get the report, then versions and every node not upgraded."""
    lines = end_summary(plan, state, window)[1:]  # the title says its word
    if state.error:
        lines.insert(0, state.error)
    details = next(
        (i for i, line in enumerate(lines) if line.startswith(("versions", "package", " "))
         or line.endswith("not upgraded:")),
        len(lines),
    )  # fmt: skip
    lines[details:details] = [f"the change record: rollgate report {run_id}", ""]
    return "\n".join(lines)
