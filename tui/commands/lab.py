"""`rollgate lab INVENTORY`: serve the lab standalone so ssh and openstack work by hand."""

from __future__ import annotations

import asyncio

import click

from rollgate.tui.commands.options import TIME_SCALE


@click.command()
@click.argument("inventory", type=click.Path(dir_okay=False))
@click.option(
    "--time-scale",
    type=TIME_SCALE,
    default=None,
    help="Scale simulated durations (0 = instant; default from the inventory).",
)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="SPEC",
    help="Inject a fault (repeatable; see docs/lab.md).",
)
@click.option("--fresh", is_flag=True, help="Start from `from` instead of the saved world.")
def lab(inventory: str, time_scale: float | None, faults: tuple[str, ...], fresh: bool) -> int:
    """Serve INVENTORY's lab (SSH per node, the OpenStack API) until Ctrl-C."""
    from rollgate.core.errors import UserError
    from rollgate.core.inventory import load_inventory
    from rollgate.core.lab import Lab

    inv = load_inventory(inventory)
    if inv.lab is None:
        raise UserError(f"{inventory} has no lab: section; only lab inventories can be served")

    async def main() -> None:
        running = await Lab.start(
            inv,
            time_scale=time_scale,
            faults=list(faults) or None,
            serve=True,
            persist=True,
            restore=not fresh,
        )
        node = running.effective_inventory.nodes[-1]
        site = running.effective_inventory.sites[-1]
        click.echo(
            f"lab {inv.cloud}: {len(inv.nodes)} nodes, {len(inv.sites)} sites "
            f"(state in {running.state_dir})"
        )
        click.echo(
            f"  ssh -i {node.ssh.key} -o UserKnownHostsFile={node.ssh.known_hosts} "
            f"-p {node.ssh.port} {node.ssh.user}@{node.address} nova-status upgrade check"
        )
        click.echo(
            f"  OS_CLIENT_CONFIG_FILE={running.clouds_yaml} openstack --os-cloud "
            f"{site.openstack.cloud} --os-region-name {site.region} compute service list"
        )
        click.echo("Ctrl-C stops it.")
        try:
            await asyncio.Event().wait()
        finally:
            await running.close()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        click.echo("lab stopped")
    return 0
