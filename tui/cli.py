"""The `rollgate` command line: a click group whose subcommands are imported only when used."""

from __future__ import annotations

import gc
import importlib
import os
import sys
from typing import NoReturn

import click

# name -> "module:attribute" in rollgate.tui.commands; each module holds one command and
# imports what it needs lazily, so `rollgate --help` stays fast.
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("validate:validate", "Check an inventory and print a summary."),
    "plan": ("plan:plan", "Print the upgrade plan as a tree or JSON."),
    "run": ("run:run", "Drive an upgrade in the console (or --headless)."),
    "rollback": ("rollback:rollback", "Roll a site back to the release a run started from."),
    "runs": ("runs:runs", "List past and current runs."),
    "watch": ("watch:watch", "Follow a run another console drives, read-only."),
    "replay": ("replay:replay", "Replay a past run (read-only)."),
    "report": ("report:report", "The change record of a run (md, html, json)."),
    "check": ("check:check", "Pre-flight every node and site; changes nothing."),
    "lab": ("lab:lab", "Serve the simulated cloud of a lab inventory."),
    "import": ("importing:import_", "Write an inventory from kolla-ansible's or OSA's."),
    "discover": ("discover:discover", "Print a cloud, as its APIs list it, as an inventory."),
    "attach": ("control:attach", "Open the console on a running run's engine."),
    "status": ("control:status", "How a run stands (--json for scripts)."),
    "approve": ("control:approve", "Approve a run's open gate."),
    "reject": ("control:reject", "Reject a run's open gate (the run stops)."),
    "retry": ("control:retry", "Retry the failed steps at a failure gate."),
    "skip": ("control:skip", "Skip the failed steps, with --reason."),
    "pause": ("control:pause", "Pause a run (running steps finish)."),
    "continue": ("control:continue_", "Continue a paused run."),
    "abort": ("control:abort", "Abort a run (running commands are terminated)."),
    "serve": ("serve:serve", "Serve a run's console to a browser on 127.0.0.1."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*COMMANDS]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name][0].split(":")
        return getattr(importlib.import_module(f"rollgate.tui.commands.{module}"), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_, help_text) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rollgate")
def cli() -> None:
    """Rollgate: plan, run and supervise OpenStack upgrades across many sites.

    Start with `rollgate validate INVENTORY`, look at `rollgate plan INVENTORY`, then
    `rollgate run INVENTORY`. The demo inventory sample_inventory/lab-two-sites.yaml runs
    against the built-in lab, a simulated cloud on loopback.
    """


_kept: list[object] | None = None  # a process started by main(): see keep_until_exit


def keep_until_exit(*models: object) -> None:
    """A command's large models (a plan of 20,000 nodes: 400,000 steps) are kept until the
    process ends, and it then ends without freeing them one by one (0.2 s of
    `rollgate validate` at that size). Only in a process main() started; called from a test
    (click's CliRunner) they are let go as usual. Kept, they are also moved out of the
    collector's sight (gc.freeze): its collections would walk them again and again while the
    command prints (the tree of that plan took 0.87 s to draw with them in sight, 0.17 s
    without)."""
    if _kept is not None:
        _kept.extend(models)
        gc.freeze()


def _end(code: int) -> NoReturn:
    """Exit with `code`; with models kept, without freeing them (output flushed first)."""
    if _kept:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def main() -> None:
    """Entry point: user errors print one line each to stderr and exit 2, never a traceback."""
    from rollgate.core.errors import UserError
    from rollgate.core.yamlsource import SourceError

    global _kept
    _kept = []
    try:
        result = cli.main(prog_name="rollgate", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except SourceError as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(2)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    else:
        _end(result if isinstance(result, int) else 0)
