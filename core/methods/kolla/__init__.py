"""The kolla-ansible method: each site's deploy host runs kolla-ansible as its upgrade
procedure says; containers and images have kolla's names (mapping.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rollgate.core.methods import Method, Problem
from rollgate.core.methods.kolla.mapping import CONTAINERS, IMAGES
from rollgate.core.methods.kolla.plan import (
    BUILDERS,
    VALUE_NAMES,
    KollaHooks,
    check_inventory,
    plan_values,
)

if TYPE_CHECKING:
    from rollgate.core.executor import Executor
    from rollgate.core.inventory import Inventory, InventorySpec, Node
    from rollgate.core.lab import LabHandler, World
    from rollgate.core.preflight import Finding
    from rollgate.core.releases import Release


class Kolla(Method):
    name = "kolla"
    packages = IMAGES
    units = CONTAINERS
    plan_value_names = VALUE_NAMES
    builders = BUILDERS
    hooks = KollaHooks()
    rollback_refusal = (
        "kolla-ansible does not support downgrades (its upgrade moves containers forward only); "
        "restore the databases from kolla's mariadb-backup (docs: kolla-ansible "
        "admin/mariadb-backup-and-restore) and deploy the source's openstack_release with the "
        "source's kolla-ansible"
    )

    def check_inventory(self, spec: InventorySpec, target: Release, problem: Problem) -> None:
        check_inventory(spec, target, problem)

    def plan_values(self, inventory: Inventory, variables: Mapping[str, Any]) -> dict[str, Any]:
        return plan_values(inventory, variables)

    async def preflight(
        self, executor: Executor, inventory: Inventory, node: Node
    ) -> list[Finding]:
        from rollgate.core.methods.kolla.preflight import check_node

        return await check_node(executor, inventory, node)

    def lab_commands(self) -> Mapping[str, LabHandler]:
        from rollgate.core.methods.kolla.lab import COMMANDS

        return COMMANDS

    def lab_seed(self, world: World) -> None:
        from rollgate.core.methods.kolla.lab import seed

        seed(world)


METHOD = Kolla()
