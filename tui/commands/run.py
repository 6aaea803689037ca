"""`rollgate run INVENTORY`: drive an upgrade, in the console or headless in the terminal."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import TYPE_CHECKING

import click

from rollgate.tui.commands.options import TIME_SCALE, ask_become_pass, asked_become_password

if TYPE_CHECKING:
    from rollgate.core.session import Session


@click.command()
@click.argument("inventory", type=click.Path(dir_okay=False))
@click.option(
    "--headless",
    is_flag=True,
    help="No console: a live view in the terminal that asks at each gate.",
)
@click.option(
    "--auto-approve",
    is_flag=True,
    help="Approve every approval gate without asking (journalled as auto-approve). "
    "Failure gates still need a decision.",
)
@click.option("--operator", default="", help="Your name in the journal (default: login name).")
@click.option(
    "--journal",
    "journal",
    type=click.Path(dir_okay=False),
    help="Write the journal here instead of the run directory.",
)
@click.option(
    "--resume",
    metavar="RUN_ID|JOURNAL",
    help="Continue a run that stopped: finished steps are not run again.",
)
@click.option("--dry-run", is_flag=True, help="Run nothing; show what each step would run.")
@click.option(
    "--lab-inprocess",
    is_flag=True,
    help="Lab inventories: simulate in-process instead of over SSH and HTTP.",
)
@click.option(
    "--time-scale",
    type=TIME_SCALE,
    default=None,
    help="Lab inventories: scale simulated durations (0 = instant).",
)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="SPEC",
    help="Lab inventories: inject a fault (repeatable; see docs/lab.md).",
)
@click.option(
    "--outside-window",
    is_flag=True,
    help="Start even outside the inventory's maintenance window (journalled). Without it the "
    "console asks, and --headless refuses.",
)
@click.option(
    "--no-verify-host-keys",
    "insecure",
    is_flag=True,
    help="Do not verify SSH host keys (warned about on every run).",
)
@click.option(
    "--detach",
    is_flag=True,
    help="Start the engine in the background and print the run id; attach a console with "
    "`rollgate attach RUN_ID`, decide gates with `rollgate approve RUN_ID`...",
)
@click.option(
    "--foreground",
    is_flag=True,
    help="Run the engine inside this console's process (closing the console pauses the run).",
)
@click.option(
    "--control-group",
    default="",
    metavar="GROUP",
    help="Open the run's control socket to this group (mode 0660) so a team can attach and "
    "decide; the journal names each one by login.",
)
@ask_become_pass
@click.option("--become-password-stdin", hidden=True, is_flag=True)
@click.option("--engine-process", hidden=True, type=click.Path(), default=None)
def run(
    inventory: str,
    headless: bool,
    auto_approve: bool,
    operator: str,
    journal: str | None,
    resume: str | None,
    dry_run: bool,
    lab_inprocess: bool,
    time_scale: float | None,
    faults: tuple[str, ...],
    insecure: bool,
    outside_window: bool,
    detach: bool,
    foreground: bool,
    control_group: str,
    ask_become_pass: bool,
    become_password_stdin: bool,
    engine_process: str | None,
) -> int:
    """Upgrade the cloud described by INVENTORY, supervising it step by step.

    The engine runs as its own process: closing the console (or losing the terminal) leaves
    the run going; `rollgate attach RUN_ID` comes back. --headless and --foreground drive it
    from this process instead.

    Exit codes: 0 the run completed, 1 it failed, was stopped or aborted, 2 a usage or input
    error.
    """
    from rollgate.core.session import RunOptions, open_session

    # the engine process is given the password on its stdin, never on its command line
    password = sys.stdin.readline().rstrip("\n") if become_password_stdin else None
    if password is None:
        password = asked_become_password(ask_become_pass)
    if engine_process is None and (detach or not (headless or foreground)):
        from rollgate.core.detach import check_can_start, spawn_engine

        check_can_start(inventory, refuse_outside_window=detach and not outside_window,
                        resume=resume, group=control_group)  # fmt: skip
        if insecure:  # as a foreground run says it; the engine's own log says it too
            click.echo(
                "WARNING: SSH host keys are NOT verified (--no-verify-host-keys); anyone on "
                "the path could impersonate the nodes",
                err=True,
            )
        argv = [inventory, *(["--operator", operator] if operator else [])]
        argv += ["--auto-approve"] * auto_approve + ["--dry-run"] * dry_run
        argv += ["--lab-inprocess"] * lab_inprocess + ["--no-verify-host-keys"] * insecure
        argv += ["--outside-window"] * outside_window
        argv += ["--journal", journal] if journal else []
        argv += ["--resume", resume] if resume else []
        argv += ["--time-scale", str(time_scale)] if time_scale is not None else []
        argv += ["--control-group", control_group] if control_group else []
        for fault in faults:
            argv += ["--fault", fault]
        argv += ["--become-password-stdin"] * (password is not None)
        run_id = spawn_engine(argv, stdin_secret=password)
        if detach:
            click.echo(run_id)
            return 0
        from rollgate.tui.commands.control import attach_console

        return attach_console(run_id, hint=f"rollgate run {inventory} --resume {run_id}")

    options = RunOptions(
        operator=operator,
        auto_approve=auto_approve,
        dry_run=dry_run,
        journal=journal,
        resume=resume,
        lab_inprocess=lab_inprocess,
        time_scale=time_scale,
        faults=list(faults),
        insecure=insecure,
        outside_window=outside_window,
        refuse_outside_window=headless and engine_process is None,
        control_group=control_group,
        become_password=password,
    )

    from rollgate.tui.gc_policy import tuned_gc

    async def main() -> int:
        async with open_session(inventory, options) as session:
            if engine_process is not None:  # the detached engine (started by the lines above)
                import logging
                from pathlib import Path

                from rollgate.core.detach import engine_main

                # engine.log: what the engine's parts log (the control socket's refusals)
                logging.basicConfig(
                    stream=sys.stderr,
                    level=logging.INFO,
                    format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                )

                with tuned_gc():  # no console in this process: as headless
                    return await engine_main(session, Path(engine_process), control_group)
            if headless:
                with tuned_gc():
                    return await drive_headless(session)
            try:
                from rollgate.tui.app import run_console
            except ImportError:
                from rollgate.core.errors import UserError

                raise UserError(
                    "the console is not available in this build; add --headless"
                ) from None
            with tuned_gc(console=True):
                return await run_console(session)

    return asyncio.run(main())


async def drive_headless(session: Session) -> int:
    """Drive the run in this process and follow it with the headless view, which steers it
    only through the session's client (as a console would)."""
    from rollgate.core.client import CommandRejected
    from rollgate.core.events import Command
    from rollgate.tui.headless import HeadlessView

    options = session.engine.options
    window = session.window
    view = HeadlessView(
        session.client,
        operator=options.operator,
        journal_path=str(session.journal_path),
        resume_hint=f"rollgate run {session.inventory.file} --resume {session.run_id}",
        news_from=session.client.next_seq(),
        auto_approve=options.auto_approve,
        window=(window.start, window.end) if window is not None else None,
        notices=session.notices,
    )
    task = asyncio.create_task(session.engine.run())
    try:
        return await view.run()
    finally:
        if not task.done():  # the view failed: the run stops after its running steps
            with contextlib.suppress(CommandRejected):
                await session.client.send(Command("quit", options.operator, "the view ended"))
        await task
