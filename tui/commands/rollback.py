"""`rollgate rollback RUN --site SITE`: undo a site's phases of a past run, as a run of its own."""

from __future__ import annotations

import asyncio

import click

from rollgate.tui.commands.options import TIME_SCALE, ask_become_pass, asked_become_password


@click.command()
@click.argument("run_ref", metavar="RUN")
@click.option("--site", required=True, help="The site whose phases are undone.")
@click.option(
    "--phase",
    type=click.Choice(["identity", "image", "compute", "block-storage", "dashboard"]),
    help="Only this phase (default: every phase of the site the run started, the last first).",
)
@click.option("--inventory", type=click.Path(dir_okay=False), help="Default: the run's own.")
@click.option(
    "--dry-run", is_flag=True, help="Print the rollback's plan, every command; run nothing."
)
@click.option("--headless", is_flag=True, help="No console: a live view in the terminal.")
@click.option("--auto-approve", is_flag=True, help="Approve its gates (never failure gates).")
@click.option("--operator", default="", help="Your name in the journal (default: login name).")
@click.option("--resume", metavar="ROLLBACK_RUN", help="Continue a rollback that stopped.")
@click.option("--outside-window", is_flag=True, help="Start even outside the window.")
@click.option("--lab-inprocess", is_flag=True, help="Lab only: no SSH or HTTP.")
@click.option("--time-scale", type=TIME_SCALE, default=None, help="Lab only: speed.")
@click.option("--fault", "faults", multiple=True, metavar="SPEC", help="Lab only: a fault.")
@ask_become_pass
def rollback(
    run_ref: str,
    site: str,
    phase: str | None,
    inventory: str | None,
    dry_run: bool,
    headless: bool,
    auto_approve: bool,
    operator: str,
    resume: str | None,
    outside_window: bool,
    lab_inprocess: bool,
    time_scale: float | None,
    faults: tuple[str, ...],
    ask_become_pass: bool,
) -> int:
    """Roll SITE back to the release RUN upgraded it from: stop what its phases moved, put the
    source's code back (apt: the source pocket, packages pinned to the versions read before
    the run; the virtualenv method: each program's link), restore the databases from the
    run's own dumps, restart and read every program back, then the source's status checks.
    Its own run: gates, journal, report. kolla refuses (kolla-ansible has no downgrade).

    Exit codes as `rollgate run`: 0 complete, 1 failed, stopped or aborted, 2 input errors.
    """
    from rollgate.core.errors import UserError
    from rollgate.core.inventory import load_inventory
    from rollgate.core.journal import read_journal
    from rollgate.core.rollback import RollbackRequest
    from rollgate.core.runs import resolve_journal
    from rollgate.core.session import RunOptions, open_session, plan_for

    contents = read_journal(resolve_journal(run_ref))
    header = contents.header
    path = inventory or str(header.get("inventory") or "")
    if not path:
        raise UserError(f"run {run_ref}'s journal names no inventory: give --inventory PATH")
    request = RollbackRequest(str(header.get("run_id", run_ref)), site, phase)
    options = RunOptions(
        operator=operator,
        auto_approve=auto_approve,
        resume=resume,
        lab_inprocess=lab_inprocess,
        time_scale=time_scale,
        faults=list(faults),
        outside_window=outside_window,
        refuse_outside_window=headless,
        become_password=asked_become_password(ask_become_pass),
        rollback=request,
    )
    if dry_run:  # every command whole, one a line (they are copied), never wrapped
        plan = plan_for(load_inventory(path), options)
        rolled = plan.phases[0]
        click.echo(f"rollback of run {request.run} at {site}: {plan.source} -> {plan.target}, "
                   f"{len(plan.steps)} steps; nothing was run")  # fmt: skip
        click.echo(f"gate: {rolled.gate.title if rolled.gate else 'none'}")
        for stage in rolled.stages:
            click.echo(f"\n{stage.title}")
            for step in stage.steps:
                what = step.command or f"API: {step.title}"
                click.echo(f"  [{step.node}] {what}")
        return 0

    async def main() -> int:
        async with open_session(path, options) as session:
            if headless:
                from rollgate.tui.commands.run import drive_headless

                return await drive_headless(session)
            from rollgate.tui.app import run_console

            return await run_console(session)

    return asyncio.run(main())
