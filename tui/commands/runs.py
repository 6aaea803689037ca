"""`rollgate runs`: list past and current runs."""

from __future__ import annotations

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON array: a record per run.")
def runs(as_json: bool) -> int:
    """List runs (id, cloud, from -> to, started, state) under the state directory."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from rollgate.core.runs import list_runs, runs_dir

    found = list_runs()
    if as_json:  # for scripts: every field, the journal's path too
        import json

        records = [
            {"run_id": r.run_id, "cloud": r.cloud, "from": r.source, "to": r.target,
             "started": r.started, "state": r.state, "journal": str(r.path)}
            for r in found
        ]  # fmt: skip
        click.echo(json.dumps(records, indent=2))
        return 0
    if not found:
        click.echo(f"no runs yet under {runs_dir()}")
        return 0
    console = Console(emoji=False)  # ":warning:" in a gate id stays as written
    if not console.is_terminal:  # piped: a header, then one whole line per run, for grep
        click.echo("RUN ID  CLOUD  FROM -> TO  STARTED  STATE")
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
