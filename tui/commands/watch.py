"""`rollgate watch RUN_ID|JOURNAL`: follow a run another console drives, read-only."""

from __future__ import annotations

import click


@click.command()
@click.argument("run")
def watch(run: str) -> int:
    """Follow RUN live from its journal in the console; nothing can be approved from here."""
    from rollgate.core.client import RunClient, open_journal_client
    from rollgate.core.errors import UserError
    from rollgate.tui.app import RollgateApp
    from rollgate.tui.commands.serve import die_with_server
    from rollgate.tui.gc_policy import tuned_gc

    die_with_server()
    client: RunClient
    try:  # a detached engine serves the run: follow it through its socket
        from rollgate.tui.commands.control import engine_client

        client = engine_client(run, name="watching", read_only=True)
    except UserError:  # a finished run, or one a foreground console drives: its journal
        client = open_journal_client(run, follow=True)
    app = RollgateApp(client, operator="watching (read-only)")
    with tuned_gc(console=True):
        app.run()
    if app.error:
        raise UserError(app.error)
    return 0
