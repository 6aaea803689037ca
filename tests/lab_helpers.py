"""Lab inventories on random loopback addresses, so parallel test runs never collide."""

from __future__ import annotations

import os
import random
from pathlib import Path

from rollgate.core.inventory import Inventory, parse_inventory


def random_net() -> str:
    """A /24 of loopback addresses for one test: random, and from this xdist worker's own
    share of 127.50-249.x (so two workers never pick the same)."""
    from tests.conftest import worker_index

    rng = random.SystemRandom()
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    share = 200 // workers
    second = 50 + share * (worker_index() % workers) + rng.randrange(0, share)
    return f"127.{second}.{rng.randrange(0, 250)}"


def lab_inventory_text(
    tmp_path: Path,
    *,
    computes: int = 3,
    faults: list[str] | None = None,
    extra_policy: str = "",
    kolla: bool = False,
    unmanaged: str = "",
) -> str:
    """`kolla`: the kolla method (2025.2 -> 2026.1), with a deploy host at each site;
    `unmanaged`: site one's `unmanaged:` entries (YAML flow list items)."""
    net = random_net()
    port = random.SystemRandom().randrange(20000, 60000)
    method, upgrade = (
        ("kolla", '"2025.2", to: "2026.1"') if kolla else ("apt", '"2025.1", to: "2025.2"')
    )
    deploy = {
        site: f"\n      - {{name: {site}-deploy, address: {net}.{200 + i}, roles: [deployment]}}"
        if kolla
        else ""
        for i, site in enumerate(("hub", "one"))
    }
    kolla_recipe = (
        "recipe:\n  variables:\n    kolla_services: "
        '"cinder,glance,heat,horizon,keystone,neutron,nova,octavia,placement"\n'
    )
    return f"""
cloud: t-{net.replace(".", "-")}
method: {method}
upgrade: {{from: {upgrade}}}
ssh: {{port: {port}, become: true, connect_timeout: 3}}
shared: {{identity: {{site: hub}}}}
sites:
  hub:
    nodes:
      - {{name: key1, address: {net}.1, roles: [keystone]}}{deploy["hub"]}
  one:
    region: RegionOne
    nodes:{deploy["one"]}
      - name: ctl1
        address: {net}.2
        roles: [glance-api, placement-api, nova-conductor, nova-scheduler, nova-api,
                neutron-server, cinder-scheduler, cinder-api, cinder-volume, horizon]
      - {{name: "cmp[1:{computes}]", address: "{net}.[10:{9 + computes}]",
          roles: [nova-compute, neutron-l2-agent]}}
    unmanaged: [{unmanaged}]
{kolla_recipe if kolla else ""}policy:
  gates: none
  batch_size: 50
  step_timeout: 20
  transport_retries: 1
  {extra_policy}
lab:
  time_scale: 0
  state_dir: {tmp_path / "lab"}
  faults: {faults or []}
"""


def lab_inventory(tmp_path: Path, **kwargs: object) -> Inventory:
    return parse_inventory(
        lab_inventory_text(tmp_path, **kwargs),  # type: ignore[arg-type]
        str(tmp_path / "inv.yaml"),
    )


def lab_inventory_file(tmp_path: Path, **kwargs: object) -> Path:
    path = tmp_path / "inv.yaml"
    path.write_text(lab_inventory_text(tmp_path, **kwargs))  # type: ignore[arg-type]
    return path
