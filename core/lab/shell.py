"""One command on one lab node: where it writes, the world it reads, and what the node runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from rollgate.core.lab.world import APT, Database, LabNode, World
from rollgate.core.releases import Release
from rollgate.core.roles import ROLES

Out = Callable[[str, str], None]
Handler = Callable[["Shell", list[str]], Awaitable[int]]


class Shell:
    """One command on one lab node."""

    def __init__(
        self,
        world: World,
        node: LabNode,
        out: Out,
        env: dict[str, str] | None = None,
        stdin: str = "",
    ):
        self.world = world
        self.node = node
        self.out = out
        self.env = env or {}  # VAR=value given with `env` on the command line
        self.stdin = stdin  # what `< FILE` fed it

    def say(self, line: str) -> None:
        self.out("stdout", line)

    def err(self, line: str) -> None:
        self.out("stderr", line)

    async def pause(self, kind: str, factor: float = 1.0) -> None:
        await self.world.sleep(kind, self.node.name, factor)

    # ------------------------------------------------------------ helpers

    def code(self, service: str) -> Release | None:
        """The release of `service`'s installed code on this node (what *-manage runs)."""
        return self.world.installed(self.node, service)

    def db(self, service: str) -> Database:
        return self.world.database(self.node, service)

    def running_code(self, service: str) -> list[tuple[str, Release]]:
        """(node, release) of every running unit of `service` in its site."""
        out = []
        now = self.world.now()
        for node in self.world.service_nodes(self.node.site, service):
            for role in node.roles:
                spec = ROLES.get(role)
                if spec is None or spec.service != service:
                    continue
                unit = node.units.get(APT.unit(role))
                if unit is not None and unit.alive(now):
                    out.append((node.name, unit.code))
        return out
