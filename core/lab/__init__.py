"""The lab: a simulated multi-site cloud reached exactly as a real one (SSH and the OpenStack
API on loopback), or in-process for engine tests and benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rollgate.core.faults import parse_faults
from rollgate.core.inventory import Inventory
from rollgate.core.lab.commands import Handler as LabHandler
from rollgate.core.lab.commands import Shell, dispatch, systemctl
from rollgate.core.lab.inprocess import LabExecutor
from rollgate.core.lab.world import APT, LabNode, World, package_version
from rollgate.core.runs import private_dir

# what deployment methods' lab modules use: the world, its nodes and the shell's handlers
__all__ = [
    "APT",
    "Lab",
    "LabExecutor",
    "LabHandler",
    "LabNode",
    "Shell",
    "World",
    "dispatch",
    "lab_state_dir",
    "package_version",
    "systemctl",
]


def lab_state_dir(inventory: Inventory) -> Path:
    """Keys, known_hosts, clouds.yaml and the saved world of this inventory's lab."""
    from rollgate.core.runs import state_home

    if inventory.lab is not None and inventory.lab.state_dir:
        return Path(inventory.lab.state_dir).expanduser()
    return state_home() / "lab" / inventory.cloud


class Lab:
    def __init__(self, inventory: Inventory, world: World):
        self.inventory = inventory
        self.effective_inventory = inventory
        self.world = world
        self.clouds_yaml: Path | None = None
        self.known_hosts: Path | None = None
        self.client_key: Path | None = None
        self._servers: list[Any] = []
        self.state_dir: Path = Path()

    @classmethod
    async def start(
        cls,
        inventory: Inventory,
        *,
        time_scale: float | None = None,
        faults: list[str] | None = None,
        serve: bool = True,
        state_dir: Path | None = None,
        persist: bool = False,
        restore: bool = False,
    ) -> Lab:
        """Start the lab for `inventory`. `persist` keeps the world in the lab's state dir
        after every change (so a console that crashes finds the cloud as it left it);
        `restore` starts from that saved world instead of a fresh one at `from`."""
        spec = inventory.lab
        scale = time_scale if time_scale is not None else (spec.time_scale if spec else 0.0)
        specs = list(spec.faults if spec else []) + list(faults or [])
        parsed = parse_faults(
            specs, {n.name for n in inventory.nodes}, {s.name for s in inventory.sites}
        )
        world = World(inventory, time_scale=scale, faults=parsed, seed=spec.seed if spec else 0)
        lab = cls(inventory, world)
        lab.state_dir = state_dir or lab_state_dir(inventory)
        if persist or restore:
            private_dir(
                lab.state_dir,
                "the lab's state directory",
                "set lab.state_dir to a writable directory",
            )
            saved = lab.state_dir / "world.json"
            if restore and saved.is_file():
                world.restore_saved(saved)
            if persist:
                world.persist_path = saved
                world.save()  # the whole world once; then each change is a line
        if serve:
            from rollgate.core.lab.serve import serve_lab

            await serve_lab(lab, state_dir)
        return lab

    def executor(self) -> LabExecutor:
        return LabExecutor(self.world)

    async def close(self) -> None:
        self.world.save()  # the whole world once more, so the next lab starts from one file
        for server in self._servers:
            server.close()
            wait = getattr(server, "wait_closed", None)
            if wait is not None:
                await wait()
        self._servers.clear()
