"""`rollgate discover`: print a cloud, as its APIs list it, as an inventory skeleton."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from rollgate.core.discover import CloudFound


@click.command()
@click.argument("inventory", required=False, type=click.Path(dir_okay=False))
@click.option("--os-cloud", "os_cloud", metavar="NAME", help="The cloud of clouds.yaml to read "
              "(default: OS_CLOUD, or the inventory's sites).")  # fmt: skip
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write it to FILE.")
def discover(inventory: str | None, os_cloud: str | None, output: str | None) -> int:
    """List the cloud's regions and endpoints (keystone), nova services and their hosts,
    neutron agents, cinder services and placement's resource providers, and print them as
    an inventory skeleton with what the APIs cannot say marked TODO.

    INVENTORY: read the cloud its sites name (a lab inventory's lab is started for it).
    """
    from rollgate.core.discover import discover as read_cloud
    from rollgate.core.discover import skeleton
    from rollgate.core.errors import UserError

    cloud = os_cloud or os.environ.get("OS_CLOUD")
    if inventory is None and not cloud:
        raise UserError("discover needs a cloud: give --os-cloud NAME (or OS_CLOUD), or an "
                        "inventory whose sites name one")  # fmt: skip
    if inventory is None or os_cloud:
        found = read_cloud(cloud, None)
    else:
        found = asyncio.run(_through_inventory(inventory))
    text = skeleton(found)
    if output:
        Path(output).write_text(text)
        hosts = sum(len(r.services) for r in found.regions)
        click.echo(f"{output}: {hosts} hosts in {len(found.regions)} regions; fill in its TODOs")
    else:
        click.echo(text, nl=False)
    return 0


async def _through_inventory(path: str) -> CloudFound:
    from rollgate.core.discover import discover as read_cloud
    from rollgate.core.inventory import load_inventory
    from rollgate.core.session import RunOptions, open_executor

    inv = load_inventory(path)
    notices: list[str] = []
    options = RunOptions(time_scale=0.0, lab_read_only=True)
    async with open_executor(inv, options, notices) as (_, effective):
        site = effective.sites[0]
        cloud = site.openstack.cloud or os.environ.get("OS_CLOUD")
        return await asyncio.to_thread(read_cloud, cloud, site.openstack.clouds_yaml)
