"""`rollgate report RUN_ID|JOURNAL`: the change record of a run."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("run")
@click.option(
    "--format", "fmt", type=click.Choice(["md", "html", "json"]), default="md", show_default=True
)
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write to this file.")
def report(run: str, fmt: str, output: str | None) -> int:
    """Cloud, from -> to, start, end and duration per phase and site, every node's outcome,
    failures with their last output, every gate with operator, decision, comment and time,
    and deviations (skips, retries, decisions on interrupted steps). Secrets are masked."""
    from rollgate.core.client import open_journal_client
    from rollgate.core.report import build_report, to_html, to_json, to_markdown

    client = open_journal_client(run)
    data = build_report(client.plan, client.header, client.all_events())
    text = {"md": to_markdown, "html": to_html, "json": to_json}[fmt](data)
    if output:
        from rollgate.core.errors import UserError
        from rollgate.core.runs import write_private

        try:
            write_private(Path(output), text)  # 0600: a change record is not for everyone
        except OSError as exc:
            raise UserError(f"cannot write {output}: {exc.strerror}; choose another -o") from None
        click.echo(f"report written to {output}")
    else:
        click.echo(text, nl=False)
    return 0
