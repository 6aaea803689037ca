"""Twin gates: the same question asked of several sites (east's and west's "start Compute?",
their skip-level downtime gates). One gate per decision always; an operator may answer a gate
and its twins together, only explicitly (`approve --twins`, the console's A): each twin is
then decided, as it opens, with the same operator and comment, journalled gate by gate."""

from __future__ import annotations

import re

from rollgate.core.plan import Gate, Plan


def plan_gates(plan: Plan) -> list[tuple[str, Gate]]:
    """(site, gate) of every gate the plan asks: its phases' and their stages'."""
    out = []
    for phase in plan.phases:
        if phase.gate is not None:
            out.append((phase.site, phase.gate))
        out += [(phase.site, stage.gate) for stage in phase.stages if stage.gate is not None]
    return out


def _shape(title: str, site: str, nodes: tuple[str, ...]) -> str:
    """The question without what makes it a site's own: the site's name and its nodes."""
    for name in sorted(nodes, key=len, reverse=True):
        title = title.replace(name, "NODE")
    title = re.sub(r"\(NODE(?:[,\[\]:0-9A-Za-z-]*)\)", "(NODES)", title)
    return re.sub(rf"\b{re.escape(site)}\b", "SITE", title)


def twins_of(plan: Plan, gate_id: str, decided: set[str]) -> list[tuple[str, Gate]]:
    """The gates of other sites that ask what `gate_id` asks (same kind, same words but for
    the site and its nodes), not decided yet, in the plan's order."""
    nodes_of: dict[str, tuple[str, ...]] = {}
    for phase in plan.phases:
        nodes_of[phase.site] = nodes_of.get(phase.site, ()) + tuple(
            dict.fromkeys(s.node for s in phase.steps)
        )
    gates = plan_gates(plan)
    mine = next(((site, g) for site, g in gates if g.id == gate_id), None)
    if mine is None:
        return []
    site, gate = mine
    shape = _shape(gate.title, site, nodes_of.get(site, ()))
    return [
        (other, g)
        for other, g in gates
        if other != site and g.kind == gate.kind and g.id not in decided
        and g.id != gate_id and _shape(g.title, other, nodes_of.get(other, ())) == shape
    ]  # fmt: skip
