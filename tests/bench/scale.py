"""Lab inventories of any size (sites x computes) on loopback, for the benchmarks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

CONTROL_ROLES = (
    "[glance-api, placement-api, nova-conductor, nova-scheduler, nova-api, neutron-server, "
    "cinder-scheduler, cinder-api, cinder-volume, horizon]"
)


def compute_blocks(computes: int) -> Iterator[tuple[int, int, int, int]]:
    """(first, last, third octet, count) of each block of up to 250 computes, one loopback /24
    each: computes 1-250 on .1, 251-500 on .2..."""
    for block in range(0, computes, 250):
        count = min(250, computes - block)
        yield block + 1, block + count, block // 250 + 1, count


def scale_inventory_text(
    state_dir: Path, *, sites: int = 10, computes: int = 1000, batch_size: int = 100
) -> str:
    """A lab cloud: one identity site plus `sites` sites of one controller and N computes."""
    lines = [
        f"cloud: bench-{sites}x{computes}",
        'upgrade: {from: "2025.1", to: "2025.2"}',
        "ssh: {port: 2222, become: true}",
        "shared: {identity: {site: hub}}",
        "sites:",
        "  hub:",
        "    nodes:",
        "      - {name: key1, address: 127.60.0.1, roles: [keystone]}",
    ]
    for s in range(1, sites + 1):
        lines += [
            f"  s{s:02d}:",
            f"    region: Region{s:02d}",
            "    nodes:",
            f"      - {{name: s{s:02d}-ctl1, address: 127.{60 + s}.0.1, roles: {CONTROL_ROLES}}}",
        ]
        # computes spread over 127.(60+s).(1..).(1..250)
        for first, last, third, count in compute_blocks(computes):
            lines.append(
                f'      - {{name: "s{s:02d}-cmp[{first:04d}:{last:04d}]", '
                f'address: "127.{60 + s}.{third}.[1:{count}]", '
                "roles: [nova-compute, neutron-l2-agent]}"
            )
    lines += [
        "policy:",
        "  gates: none",
        f"  batch_size: {batch_size}",
        "  site_concurrency: 10",
        "  step_timeout: 60",
        "lab:",
        "  time_scale: 0",
        f"  state_dir: {state_dir}",
    ]
    return "\n".join(lines) + "\n"


def scale_inventory_file(directory: Path, **kwargs: int) -> Path:
    path = directory / "inventory.yaml"
    path.write_text(scale_inventory_text(directory / "lab", **kwargs))
    return path
