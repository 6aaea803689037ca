"""`rollgate watch RUN_ID|JOURNAL`: follow a run another console drives, read-only."""

from __future__ import annotations

import click


@click.command()
@click.argument("run")
def watch(run: str) -> int:
    """Follow RUN live from its journal in the console; nothing can be approved from here."""
    from core.client import open_journal_client
    from tui.app import RollgateApp
    from tui.gc_policy import tuned_gc

    client = open_journal_client(run, follow=True)
    app = RollgateApp(client, operator="watching (read-only)")
    with tuned_gc(console=True):
        app.run()
    if app.error:
        from core.errors import UserError

        raise UserError(app.error)
    return 0
