"""`rollgate runs`: list past and current runs."""

from __future__ import annotations

import click


@click.command()
def runs() -> int:
    """List runs (id, cloud, from -> to, started, state) under the state directory."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from rollgate.core.runs import list_runs, runs_dir

    found = list_runs()
    if not found:
        click.echo(f"no runs yet under {runs_dir()}")
        return 0
    console = Console()
    if not console.is_terminal:  # piped: one whole line per run, for grep and scripts
        for r in found:
            click.echo(f"{r.run_id}  {r.cloud}  {r.source} -> {r.target}  {r.started}  {r.state}")
        return 0
    table = Table("run id", "cloud", "upgrade", "started", "state")
    table.columns[0].no_wrap = True  # an id is copied whole into --resume, report, replay
    table.columns[0].min_width = max(len(r.run_id) for r in found)
    for r in found:
        table.add_row(
            Text(r.run_id), Text(r.cloud), f"{r.source} -> {r.target}", r.started, Text(r.state)
        )
    console.print(table)
    return 0
