"""`rollgate validate INVENTORY`: check an inventory and print a one-line summary."""

from __future__ import annotations

import time

import click


@click.command()
@click.argument("inventory", type=click.Path(dir_okay=False))
def validate(inventory: str) -> int:
    """Check INVENTORY without touching any node: exit 0 and a summary, or the errors and 2."""
    from rollgate.core.inventory import load_inventory
    from rollgate.core.plan import build_plan
    from rollgate.core.window import resolve as resolve_window
    from rollgate.tui.cli import keep_until_exit

    inv = load_inventory(inventory)
    plan = build_plan(inv)
    keep_until_exit(inv, plan)
    window = resolve_window(inv.window, None)
    if window is not None and not window.relative and window.end < time.time():
        click.echo(
            f"warning: {inventory}: the maintenance window ended ({window.label()}), in the "
            "past; update window: before the run (a run outside it needs --outside-window)",
            err=True,
        )
    from rollgate.core.lifecycle import skip_level_pairs, warnings

    for line in warnings(inv.upgrade):
        click.echo(f"warning: {inventory}: {line}", err=True)
    computes = sum(1 for n in inv.nodes if n.has("nova-compute"))
    click.echo(
        f"{inventory}: ok: cloud {inv.cloud}, {inv.upgrade.describe()}, {len(inv.sites)} sites, "
        f"{len(inv.nodes)} nodes ({computes} computes), {len(plan.phases)} phases, "
        f"{len(plan.steps)} steps, plan {plan.digest[:12]}"
    )
    if inv.upgrade.skip_level:
        click.echo(f"  skip-level: the supported pairs are {', '.join(skip_level_pairs())}")
    return 0
