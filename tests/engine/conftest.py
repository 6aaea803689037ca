"""Helpers that build a real engine on the in-process lab for the small test cloud."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from rollgate.core import events as ev
from rollgate.core.client import CommandRejected
from rollgate.core.engine import Engine, EngineOptions
from rollgate.core.engine.client import EngineClient
from rollgate.core.inventory import Inventory, load_inventory, parse_inventory
from rollgate.core.journal import JournalWriter
from rollgate.core.lab import Lab
from rollgate.core.plan import Plan, build_plan
from rollgate.core.recipes import load_recipe

SMALL = Path(__file__).with_name("small.yaml")

Decide = Callable[[ev.GateOpened], Awaitable[ev.Command | None] | ev.Command | None]


@dataclasses.dataclass
class Harness:
    inventory: Inventory
    plan: Plan
    lab: Lab
    engine: Engine
    client: EngineClient

    def events(self, cls: type[ev.Event]) -> list[Any]:
        return [e for e in self.engine.history if isinstance(e, cls)]

    def step_ids(self, outcome: str) -> list[str]:
        return [e.step for e in self.events(ev.StepFinished) if e.outcome == outcome]


async def make(
    tmp_path: Path | None = None,
    *,
    faults: list[str] | None = None,
    auto_approve: bool = True,
    policy: dict[str, Any] | None = None,
    history: list[ev.Event] | None = None,
    backoff: float = 0.0,
    recipe: dict[str, Any] | None = None,
    target: str | None = None,
    options: dict[str, Any] | None = None,
) -> Harness:
    """`recipe`: {"variables": {...}, "actions": {...}} overrides, as an inventory's;
    `target`: another release to upgrade to (2026.1: a skip-level jump); `options`: engine
    options other than the harness's (EngineOptions fields)."""
    inventory = load_inventory(SMALL)
    if target is not None:
        text = SMALL.read_text().replace('to: "2025.2"', f'to: "{target}"', 1)
        inventory = parse_inventory(text, str(SMALL))
    if policy:
        inventory = dataclasses.replace(
            inventory, policy=inventory.policy.model_copy(update=policy)
        )
    plan = build_plan(
        inventory,
        load_recipe(inventory.method).with_overrides(
            recipe.get("variables", {}), recipe.get("actions", {})
        )
        if recipe
        else None,
    )
    lab = await Lab.start(  # with a tmp_path the world is kept there, so a resume finds it
        inventory,
        time_scale=0,
        faults=faults,
        serve=False,
        state_dir=tmp_path / "lab" if tmp_path is not None else None,
        persist=tmp_path is not None,
        restore=bool(history) and tmp_path is not None,
    )
    journal = None
    if tmp_path is not None:
        journal = JournalWriter(
            tmp_path / "journal.jsonl",
            None
            if history
            else {"run_id": "t", "plan_digest": plan.digest, "plan": plan.to_dict()},
        )
    engine = Engine(
        plan,
        inventory,
        lab.executor(),
        EngineOptions(
            "tester",
            "t",
            auto_approve=auto_approve,
            backoff=backoff,
            flush_interval=0.01,
            backup_root=tmp_path / "backups" if tmp_path is not None else None,
            **(options or {}),
        ),
        journal=journal,
        history=history,
    )
    return Harness(inventory, plan, lab, engine, EngineClient(engine, {}))


def abort_at_failure(gate: ev.GateOpened) -> ev.Command | None:
    """A `decide` for drive(): abort at the first failure gate, approve everything else."""
    if gate.kind == "failure":
        return ev.Command("abort", "tester", "the failure was seen", gate.gate)
    return None


async def drive(h: Harness, decide: Decide, timeout: float = 30) -> str:
    """Run the engine, answering each gate with `decide(gate)` (None: approve)."""

    async def answer() -> None:
        async for event in h.client.events(1):
            if isinstance(event, ev.GateOpened):
                command = decide(event)
                if asyncio.iscoroutine(command):
                    command = await command
                if command is None:
                    command = ev.Command("approve", "tester", "", event.gate)
                with contextlib.suppress(CommandRejected):  # auto-approved before we answered
                    await h.client.send(command)

    answering = asyncio.create_task(answer())
    try:
        return await asyncio.wait_for(h.engine.run(), timeout)
    finally:
        answering.cancel()


@pytest.fixture
def small_inventory() -> Inventory:
    return load_inventory(SMALL)
