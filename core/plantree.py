"""The plan as a rich Tree an operator can read on one screen; large batches are summarised."""

from __future__ import annotations

from rich.text import Text
from rich.tree import Tree

from rollgate.core.hostrange import compress
from rollgate.core.plan import Plan, Stage, Step
from rollgate.core.secrets import mask


def _gate_line(title: str) -> Text:
    return Text.assemble(("⏸ gate: ", "bold yellow"), (title, "yellow"))


def _per_node(stage: Stage, detail: bool) -> list[str]:
    first = stage.nodes[0]
    steps = [s for s in stage.steps if s.node == first]
    if detail:
        return [mask(s.command) if s.command else f"[{s.executor}] {s.title}" for s in steps]
    return [s.title for s in steps]


ONCE_PER_BATCH = "deployment"  # a step of this role runs once for its whole batch (kolla)


def _batch_of(stage: Stage) -> str:
    """The batch a stage belongs to: `batch-2` for stages `batch-2`, `batch-2-fence` ..."""
    return "-".join(stage.id.rsplit("/", 1)[-1].split("-")[:2])


def _batch_lines(stage: Stage, detail: bool) -> list[str]:
    """What one batch's stage does: each node's steps, then the steps run once per batch."""

    def label(s: Step) -> str:
        return mask(s.command) if detail and s.command else s.title

    lines = []
    nodes = [s.node for s in stage.steps if s.role != ONCE_PER_BATCH]
    if nodes:
        steps = [s for s in stage.steps if s.node == nodes[0]]
        lines.append("each node: " + " -> ".join(label(s) for s in steps))
    for s in stage.steps:
        if s.role == ONCE_PER_BATCH:
            lines.append(f"each batch, on {s.node}: {label(s)}")
    return lines


SUMMARISE_OVER = 2  # nodes in a stage beyond which nodes doing the same steps share a line


def _node_groups(stage: Stage) -> list[tuple[list[str], list[Step]]]:
    """The stage's nodes grouped by the steps they run (the same actions, in order)."""
    by_node: dict[str, list[Step]] = {}  # one pass: a stage of 1,000 nodes has 20,000 steps
    for step in stage.steps:
        by_node.setdefault(step.node, []).append(step)
    groups: dict[tuple[str, ...], tuple[list[str], list[Step]]] = {}
    for node, steps in by_node.items():
        key = tuple(s.id.rsplit("/", 1)[-1] for s in steps)
        groups.setdefault(key, ([], steps))[0].append(node)
    return list(groups.values())


def plan_tree(plan: Plan, *, detail: bool = False) -> Tree:
    """Build the tree; `detail` shows commands instead of titles."""
    kind = " (skip-level)" if plan.skip_level else ""
    root = Tree(
        Text.assemble(
            (f"{plan.cloud}", "bold"),
            f": {plan.source} -> {plan.target}{kind}, ",
            f"method {plan.method}, {len(plan.phases)} phases, {len(plan.steps)} steps, ",
            (f"plan {plan.digest[:12]}", "dim"),
        )
    )
    waves = sorted({p.wave for p in plan.phases})
    for phase in plan.phases:
        if phase.gate:
            root.add(_gate_line(phase.gate.title))
        number = waves.index(phase.wave) + 1
        branch = root.add(Text(f"{number}. {phase.title} @ {phase.site}", "bold cyan"))
        batches = [s for s in phase.stages if s.kind == "batch"]
        first = _batch_of(batches[0]) if batches else ""
        for stage in phase.stages:
            if stage.gate:
                branch.add(_gate_line(stage.gate.title))
            if stage.kind == "batch":
                if _batch_of(stage) != first:
                    continue
                if stage is batches[0]:
                    names = list(
                        dict.fromkeys(
                            s.node for b in batches for s in b.steps if s.role != ONCE_PER_BATCH
                        )
                    )
                    count = len({_batch_of(b) for b in batches})
                    size = max(
                        len({s.node for s in b.steps if s.role != ONCE_PER_BATCH}) for b in batches
                    )
                    batch_node = branch.add(
                        f"batches: {compress(names)} ({len(names)} nodes, {count} batches "
                        f"of up to {size})"
                    )
                for line in _batch_lines(stage, detail):
                    batch_node.add(Text(line))
                continue
            if stage.kind in ("canary", "network"):
                node = branch.add(f"{stage.title} ({len(stage.nodes)} nodes)")
                node.add(Text("each node: " + " -> ".join(_per_node(stage, detail))))
                continue
            node = branch.add(stage.title)
            if len(stage.nodes) > SUMMARISE_OVER:
                for names, steps in _node_groups(stage):
                    labels = [
                        mask(st.command) if detail and st.command else st.title for st in steps
                    ]
                    if len(names) == 1:
                        labels = [f"{label}  [{names[0]}]" for label in labels]
                        for label in labels:
                            node.add(Text(label))
                        continue
                    group = node.add(f"{compress(names)} ({len(names)} nodes)")
                    group.add(Text("each node: " + " -> ".join(labels)))
                continue
            for step in stage.steps:
                label = mask(step.command) if detail and step.command else step.title
                node.add(Text.assemble(label, (f"  [{step.node}]", "dim")))
    return root
