"""The virtualenv method (OpenStack-Ansible's way): each release's services in a virtualenv of
their own, installed from PyPI beside the old one before the window, each service switched to
it when its turn comes, run by a process supervisor (supervisor or systemd)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rollgate.core.methods import Method, Problem
from rollgate.core.methods.venv.mapping import DISTRIBUTIONS, PROGRAMS
from rollgate.core.methods.venv.plan import (
    BUILDERS,
    VALUE_NAMES,
    VenvHooks,
    check_inventory,
    plan_values,
)

if TYPE_CHECKING:
    from rollgate.core.executor import Executor
    from rollgate.core.inventory import Inventory, InventorySpec, Node
    from rollgate.core.preflight import Finding
    from rollgate.core.releases import Release


class Venv(Method):
    name = "venv"
    packages = DISTRIBUTIONS
    units = PROGRAMS
    hooks = VenvHooks()
    plan_value_names = VALUE_NAMES
    builders = BUILDERS

    def check_inventory(self, spec: InventorySpec, target: Release, problem: Problem) -> None:
        check_inventory(spec, target, problem)

    def plan_values(self, inventory: Inventory, variables: Mapping[str, Any]) -> dict[str, Any]:
        return plan_values(inventory, variables)

    async def preflight(self, executor: Executor, inventory: Inventory, node: Node) -> list[Finding]:
        from rollgate.core.methods.venv.preflight import check_node

        return await check_node(executor, inventory, node)


METHOD = Venv()
