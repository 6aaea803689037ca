"""The apt method: Ubuntu Cloud Archive packages and systemd units, driven over SSH."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from rollgate.core.hostrange import compress
from rollgate.core.methods import Cleanup, Method, Problem
from rollgate.core.methods.apt.mapping import PACKAGES, UNITS
from rollgate.core.methods.apt.plan_hooks import AptHooks
from rollgate.core.words import STEP_OK

if TYPE_CHECKING:
    from rollgate.core.executor import Executor
    from rollgate.core.inventory import Inventory, InventorySpec, Node
    from rollgate.core.lab import LabHandler, World
    from rollgate.core.plan import Plan
    from rollgate.core.preflight import Finding
    from rollgate.core.releases import Release
    from rollgate.core.state import RunState

ALLOWED_AGAIN = "package restarts allowed again"  # policy-rc.d removed


def restarts_still_blocked(plan: Plan, state: RunState) -> list[str]:
    """Nodes where an install of the run blocked package restarts (policy-rc.d) and neither
    the plan's allow-restarts step nor the clean-up at the run's end allowed them again."""
    blocked: set[str] = set()
    for phase in plan.phases:
        installed = {  # an install that started wrote policy-rc.d first
            s.node
            for s in phase.steps
            if s.action == "upgrade-packages" and state.steps[s.id].attempts > 0
        }
        blocked.update(
            step.node
            for step in phase.steps
            if step.action == "allow-restarts"
            and step.node in installed
            and state.steps[step.id].status not in STEP_OK
        )
    return sorted(n for n in blocked if not state.nodes[n].cleaned.get(ALLOWED_AGAIN))


class Apt(Method):
    name = "apt"
    packages = PACKAGES
    units = UNITS
    hooks = AptHooks()

    def check_inventory(self, spec: InventorySpec, target: Release, problem: Problem) -> None:
        """Each site's Ubuntu series must be able to carry the target release (its own
        archive or a Cloud Archive pocket); else say which series can."""
        from rollgate.core.releases import package_source, series_for, site_series

        for name, (series, where) in site_series(spec).items():
            if package_source(target, series) is None:
                problem(
                    where,
                    f"Ubuntu {series} (site {name}) cannot carry {target.label}: the Ubuntu "
                    f"Cloud Archive has it for {', '.join(series_for(target)) or 'no LTS series'}"
                    "; set recipe.variables.ubuntu_series to the nodes' series",
                )

    async def preflight(
        self, executor: Executor, inventory: Inventory, node: Node
    ) -> list[Finding]:
        from rollgate.core.methods.apt.preflight import check_node

        return await check_node(executor, inventory, node)

    def lab_commands(self) -> Mapping[str, LabHandler]:
        from rollgate.core.methods.apt.lab import COMMANDS

        return COMMANDS

    def lab_seed(self, world: World) -> None:
        from rollgate.core.methods.apt.lab import seed

        seed(world)

    def cleanups(self, plan: Plan, state: RunState) -> list[Cleanup]:
        """A run that ends part-way removes the policy-rc.d its installs wrote on each node
        whose phase did not allow restarts again itself (a resumed run's installs write it
        again), so package upgrades outside the window restart their services as usual."""
        pending = {
            s.node: s
            for s in plan.steps
            if s.action == "allow-restarts" and not state.steps[s.id].done
        }
        return [
            Cleanup(node, pending[node].command or "", ALLOWED_AGAIN)
            for node in restarts_still_blocked(plan, state)
            if node in pending
        ]

    def outcome_notes(self, plan: Plan, state: RunState) -> list[str]:
        blocked = restarts_still_blocked(plan, state)
        if not blocked:
            return []
        return [
            f"package restarts still blocked (policy-rc.d) on {compress(blocked)}: resume the "
            "run, or remove /usr/sbin/policy-rc.d there once their services run"
        ]


METHOD = Apt()
