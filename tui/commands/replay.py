"""`rollgate replay RUN_ID|JOURNAL`: see a past run through the same reducer as the live one."""

from __future__ import annotations

import click


@click.command()
@click.argument("run")
@click.option("--headless", is_flag=True, help="Print the final state summary and exit.")
def replay(run: str, headless: bool) -> int:
    """Replay RUN (a run id from `rollgate runs` or a journal path).

    The console opens at the end of the run (at the start for journals over 200,000 events),
    read-only, with a timeline: space play/pause,
    +/- speed (x0.5 to x100), left/right one event, n/N gates, e/E failures, [/] phases,
    home/end, g go to a time. --headless prints the final state: phases,
    node counts per site, failures and every gate decision with operator and comment.
    """
    from rollgate.core.client import open_journal_client
    from rollgate.core.journal_index import paused_gc
    from rollgate.core.state import fold
    from rollgate.tui.gc_policy import tuned_gc

    client = open_journal_client(run)
    if not headless:
        from rollgate.tui.replay import ReplayApp

        app = ReplayApp(client)
        with tuned_gc(console=True):
            app.run()
        if app.error:
            from rollgate.core.errors import UserError

            raise UserError(app.error)
        return 0
    import time

    from rich.console import Console

    from rollgate.tui.headless import render

    with paused_gc():
        state = fold(client.plan, client.index)
    console = Console(emoji=False)  # ":warning:" in a gate id stays as written
    console.print(render(state))
    for gate in state.gates:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(gate.decided or gate.opened))
        console.print(
            f"gate {gate.id}: {gate.decision or 'undecided'} by "
            f"{gate.operator or '-'} at {when}" + (f" — {gate.comment}" if gate.comment else ""),
            highlight=False,
        )
    if client.torn:
        console.print("note: the journal ended mid-line (a crash); replayed up to the tear")
    return 0
