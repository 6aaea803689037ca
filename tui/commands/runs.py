"""`rollgate runs`: list past and current runs."""

from __future__ import annotations

import click


@click.command()
def runs() -> int:
    """List runs (id, cloud, from -> to, started, state) under the state directory."""
    from rich.console import Console
    from rich.table import Table

    from core.runs import list_runs, runs_dir

    found = list_runs()
    if not found:
        click.echo(f"no runs yet under {runs_dir()}")
        return 0
    table = Table("run id", "cloud", "upgrade", "started", "state")
    for r in found:
        table.add_row(r.run_id, r.cloud, f"{r.source} -> {r.target}", r.started, r.state)
    Console().print(table)
    return 0
