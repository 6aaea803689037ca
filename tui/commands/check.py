"""`rollgate check INVENTORY`: pre-flight every node and site; changes nothing."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import click

from rollgate.tui.commands.options import ask_become_pass, asked_become_password

if TYPE_CHECKING:
    from rollgate.core.preflight import Finding


def grouped(findings: list[Finding]) -> list[tuple[list[str], Finding]]:
    """Findings that say the same thing (check, result, detail) of several targets, once with
    every target (333 nodes behind one unknown jump host: one row, not 333), in first-seen
    order."""
    rows: dict[tuple[str, bool, bool, str], tuple[list[str], Finding]] = {}
    for f in findings:
        key = (f.check, f.ok, f.blocking, f.detail)
        rows.setdefault(key, ([], f))[0].append(f.target)
    return list(rows.values())


@click.command()
@click.argument("inventory", type=click.Path(dir_okay=False))
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="SPEC",
    help="Lab inventories: inject a fault (see docs/lab.md).",
)
@click.option(
    "--no-verify-host-keys",
    "insecure",
    is_flag=True,
    help="Do not verify SSH host keys (warned about).",
)
@ask_become_pass
def check(inventory: str, faults: tuple[str, ...], insecure: bool, ask_become_pass: bool) -> int:
    """Check that every node is reachable (host key known, auth and sudo work), runs the
    `from` release, that each site's API answers, and each service's upgrade check passes.

    Exit 0 when nothing blocks the run, 1 when something does, 2 for input errors.
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from rollgate.core.inventory import load_inventory
    from rollgate.core.preflight import preflight, summary
    from rollgate.core.session import RunOptions, open_executor

    inv = load_inventory(inventory)
    console = Console(emoji=False)  # ":warning:" in a gate id stays as written
    password = asked_become_password(ask_become_pass)

    async def main() -> list:
        notices: list[str] = []
        options = RunOptions(
            faults=list(faults),
            insecure=insecure,
            time_scale=0.0,
            lab_read_only=True,
            become_password=password,
        )
        async with open_executor(inv, options, notices) as (executor, effective):
            for notice in notices:
                console.print(f"[dim]{notice}[/dim]")
            return await preflight(executor, effective)

    findings = asyncio.run(main())
    from rollgate.core.hostrange import compress
    from rollgate.core.lifecycle import warnings
    from rollgate.core.preflight import Finding

    findings += [
        Finding(inv.cloud, "release", False, line, blocking=False) for line in warnings(inv.upgrade)
    ]
    table = Table("node / site", "check", "result", "detail")
    table.columns[0].overflow = "fold"  # every node named, however long the list
    for targets, f in grouped(
        [f for f in findings
         if not f.ok or f.notable or f.check == "API" or f.check.endswith("-status")]
    ):  # fmt: skip
        mark = (
            "[green]✔ ok[/green]"
            if f.ok
            else ("[red]✘ blocks[/red]" if f.blocking else "[yellow]! warn[/yellow]")
        )
        who = targets[0] if len(targets) == 1 else f"{compress(targets)} ({len(targets)})"
        table.add_row(Text(who), Text(f.check), mark, Text(f.detail))
    console.print(table)
    reachable = sum(1 for f in findings if f.check == "reachable" and f.ok)
    keys = "host keys NOT verified" if insecure else "verified host keys"
    console.print(f"{reachable}/{len(inv.nodes)} nodes reachable with {keys}")
    s = summary(findings)
    console.print(
        f"{s['checks']} checks, {s['blocking']} blocking, {s['warnings']} warnings"
        + ("" if s["blocking"] else ": ready to run")
    )
    return 1 if s["blocking"] else 0
