"""`rollgate plan INVENTORY`: print the upgrade plan as a tree or as JSON."""

from __future__ import annotations

import click

WIDE = 100_000  # --detail: as wide as any command (lines are not padded to it)


@click.command()
@click.argument("inventory", type=click.Path(dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["tree", "json"]),
    default="tree",
    show_default=True,
    help="tree for people, json for tools (schema in core/plan.py).",
)
@click.option("--detail", is_flag=True, help="Show each step's command instead of its title.")
def plan(inventory: str, fmt: str, detail: bool) -> int:
    """Build the plan for INVENTORY and print it; nothing is run."""
    from rollgate.core.inventory import load_inventory
    from rollgate.core.lifecycle import warnings
    from rollgate.core.plan import build_plan, plan_json_pieces
    from rollgate.tui.cli import keep_until_exit

    inv = load_inventory(inventory)
    for line in warnings(inv.upgrade):  # stderr: the JSON on stdout stays a plan
        click.echo(f"warning: {inventory}: {line}", err=True)
    the_plan = build_plan(inv)
    keep_until_exit(inv, the_plan)
    if fmt == "json":  # one line, a phase at a time: a plan of 20,000 nodes is 200 MB of JSON
        out = click.get_binary_stream("stdout")
        out.writelines(plan_json_pieces(the_plan))
        out.write(b"\n")
        return 0
    from rich.console import Console

    from rollgate.core.plantree import plan_tree

    tree = plan_tree(the_plan, detail=detail)
    if detail:  # a command is copied whole: never wrapped or cut (the terminal folds it)
        Console(width=WIDE, soft_wrap=True, emoji=False).print(tree, crop=False)
    else:
        Console(emoji=False).print(tree)
    return 0
