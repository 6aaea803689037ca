"""Twin gates (core/twins.py): one gate per decision, and an operator may answer a gate and
its twins at the other sites together, only explicitly; each twin is journalled as its own
decision, with the same operator and comment."""

from __future__ import annotations

from pathlib import Path

from rollgate.core import events as ev
from rollgate.core.client import CommandRejected
from rollgate.core.twins import twins_of
from tests.engine.conftest import drive, make


async def test_approving_with_twins_decides_each_twin_as_it_opens(tmp_path: Path) -> None:
    h = await make(tmp_path, auto_approve=False)
    first = "gate:one/compute"
    twins = [g.id for _, g in twins_of(h.plan, first, set())]
    assert twins == ["gate:two/compute"]  # the same question, asked of site two
    refused: list[str] = []

    async def decide(gate: ev.GateOpened) -> ev.Command | None:
        if gate.gate == first:
            try:  # site two's canary gate asks something else: refused, nothing decided
                await h.client.send(ev.Command("approve", "kim", "", gate.gate,
                                               ("gate:two/compute/canary",)))  # fmt: skip
            except CommandRejected as exc:
                refused.append(str(exc))
            return ev.Command("approve", "kim", "window agreed with both sites", gate.gate,
                              ("all",))  # fmt: skip
        return ev.Command("approve", "lee", "", gate.gate)

    try:
        assert await drive(h, decide, timeout=60) == "complete"
    finally:
        await h.lab.close()
    decided = {e.gate: e for e in h.events(ev.GateDecided)}
    twin = decided["gate:two/compute"]
    assert (twin.operator, twin.comment) == (
        "kim", f"window agreed with both sites (with its twin {first})"
    )  # fmt: skip
    assert decided[first].operator == "kim"
    assert all(d.operator == "lee" for g, d in decided.items() if g not in (first, *twins))
    assert refused == ["not twins of gate:one/compute still to be asked: gate:two/compute/canary"]
    assert decided["gate:two/compute/canary"].operator == "lee"  # asked, and answered itself
    notes = [e.text for e in h.events(ev.OperatorNote)]
    assert any(f"approved {first} with its twin gate(s) gate:two/compute" in n for n in notes)
