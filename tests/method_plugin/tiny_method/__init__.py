"""A deployment method that lives outside Rollgate: one command per node and tier."""

from __future__ import annotations

from rollgate.core.methods import Method
from rollgate.core.plan import PhaseBuilder
from rollgate.core.roles import ROLES, TIERS


def _tier(b: PhaseBuilder) -> None:
    for node in b.site.nodes:
        roles = [r for r in node.roles if r in ROLES and ROLES[r].tier == b.tier]
        if roles:
            b.stage(f"upgrade@{node.name}", f"upgrade {node.name}", "control")
            b.add("upgrade", node, roles[0])


class Tiny(Method):
    name = "tiny"
    builders = {tier: _tier for tier in TIERS if tier != "prepare"}


METHOD = Tiny()
