"""What the apt method adds around each install: the target's package source, versions read
before and checked after, restarts allowed again after the node's own restarts (the install
itself blocks them: recipe.yaml, docs/apt-method.md)."""

from __future__ import annotations

from typing import Any

from rollgate.core.methods import PlanHooks
from rollgate.core.releases import SERVICES
from rollgate.core.roles import ROLES

# each line apt-get -s dist-upgrade prints when nothing is left behind: "Inst PKG [old] (new
# ...)" names a package that would move; a held one is not an Inst line but "kept back", and
# the summary counts it as "N not upgraded"
LEFT_BEHIND_OK = (
    r"(?!Inst )(?!The following packages have been kept back)(?!.* and [1-9]\d* not upgraded).*"
)


class AptHooks(PlanHooks):
    def before_first_install(self, builder: Any, node: Any, role: str) -> None:
        pocket = builder.ctx.values(node, role, {}).get("to_pocket")
        builder.add("apt-update" if pocket == "archive" else "package-source", node, role)

    def before_install(self, builder: Any, node: Any, role: str, roles: list[str]) -> None:
        for package, _ in _versioned(builder, roles):  # for the report: before -> after
            builder.add("record-version", node, role, args={"package": package}, package=package)

    def after_install(self, builder: Any, node: Any, role: str, roles: list[str]) -> None:
        target = builder.ctx.inventory.upgrade.target.id
        for package, service in _versioned(builder, roles):  # right after the install
            builder.add(
                "verify-version",
                node,
                role,
                args={"expect": target, "service": service, "package": package},
                package=package,
            )

    def after_restarts(self, builder: Any, node: Any, role: str) -> None:
        builder.add("allow-restarts", node, role)

    def after_node_installed(self, builder: Any, node: Any, role: str) -> None:
        builder.add("upgrade-node", node, role)

    def rollback_code(
        self, builder: Any, node: Any, role: str, roles: list[str], before: Any
    ) -> None:
        """The source's pocket back (once per node), then each of the roles' packages pinned
        to the version read before the run moved it (restarts blocked until they restart)."""
        from rollgate.core.errors import UserError

        if node.name not in builder.ctx.sourced:
            builder.ctx.sourced.add(node.name)
            pocket = builder.ctx.values(node, role, {}).get("to_pocket")
            builder.add("pocket-remove" if pocket == "archive" else "pocket-back", node, role)
        packages = sorted({builder.ctx.method.package(r) for r in roles})
        unknown = [p for p in packages if p not in before]
        if unknown:
            raise UserError(
                f"no version of {', '.join(unknown)} on {node.name} was read before the run "
                "moved it: a downgrade cannot be pinned; roll back by hand from the backups"
            )
        pins = [f"{p}={before[p]}" for p in packages]
        builder.blocked.setdefault(node.name, (node, role))
        builder.add("downgrade-packages", node, role, args={"pins": pins}, pins=pins)

    def verify_node(self, builder: Any, node: Any, role: str) -> None:
        """apt's simulation of a dist-upgrade lists nothing to install: no package whose
        candidate comes from the target pocket is left at an older version."""
        builder.add("left-behind", node, role, args={"expect_every_match": LEFT_BEHIND_OK,
                                                      "deviation": True})  # fmt: skip


def _versioned(builder: Any, roles: list[str]) -> list[tuple[str, str]]:
    """(package, service) of each package the roles install whose version names a release
    (horizon releases on its own), once each."""
    method = builder.ctx.method
    out: dict[str, str] = {}
    for r in sorted(roles, key=method.package):
        if ROLES[r].service in SERVICES:
            out.setdefault(method.package(r), ROLES[r].service)
    return list(out.items())
