"""The apt method's own pre-flight checks: packages the upgrade needs must not be held."""

from __future__ import annotations

from rollgate.core.executor import Executor
from rollgate.core.inventory import Inventory, Node
from rollgate.core.methods.apt.mapping import PACKAGES
from rollgate.core.preflight import Finding, run_probe
from rollgate.core.roles import ROLES


async def check_node(executor: Executor, inv: Inventory, node: Node) -> list[Finding]:
    """`apt-mark showhold` on the node; a held package the upgrade installs fails the check
    (apt-get -y stops: "Held packages were changed and -y was used without
    --allow-change-held-packages")."""
    needed = {PACKAGES.get(r, r) for r in node.roles if r in ROLES}
    result, lines = await run_probe(executor, node, "apt-mark showhold", 30)
    if result.exit_status != 0:
        return [
            Finding(node.name, "held packages", False, "apt-mark showhold failed", blocking=False)
        ]
    held = sorted(needed & {line.strip() for line in lines})
    if not held:
        return [Finding(node.name, "held packages", True, "none the upgrade needs")]
    return [
        Finding(
            node.name,
            "held packages",
            False,
            f"{', '.join(held)} held (apt-mark hold): the upgrade cannot install them; "
            f"apt-mark unhold {' '.join(held)}, or take the node out of the inventory",
        )
    ]
