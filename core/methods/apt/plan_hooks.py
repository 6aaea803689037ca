"""What the apt method adds around each install: the target's package source, restarts
blocked while packages move, the installed version checked (docs/apt-method.md)."""

from __future__ import annotations

from typing import Any

from core.methods import PlanHooks
from core.releases import SERVICES
from core.roles import ROLES


class AptHooks(PlanHooks):
    def before_first_install(self, builder: Any, node: Any, role: str) -> None:
        pocket = builder.ctx.values(node, role, {}).get("to_pocket")
        builder.add("apt-update" if pocket == "archive" else "package-source", node, role)

    def before_install_in_phase(self, builder: Any, node: Any, role: str) -> None:
        builder.add("block-restarts", node, role)

    def after_install(self, builder: Any, node: Any, role: str, roles: list[str]) -> None:
        target = builder.ctx.inventory.upgrade.target.id
        method = builder.ctx.method
        checked: set[str] = set()
        for r in sorted(roles, key=method.package):
            package = method.package(r)
            if ROLES[r].service in SERVICES and package not in checked:
                checked.add(package)  # once per package, right after the install
                builder.add(
                    "verify-version",
                    node,
                    role,
                    args={"expect": target, "service": ROLES[r].service},
                    package=package,
                )

    def after_restarts(self, builder: Any, node: Any, role: str) -> None:
        builder.add("allow-restarts", node, role)
