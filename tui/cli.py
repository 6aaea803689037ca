"""The `rollgate` command line: a click group whose subcommands are imported only when used."""

from __future__ import annotations

import importlib
import sys

import click

# name -> "module:attribute"; each module holds one command and imports what it needs lazily,
# so `rollgate --help` stays fast.
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("tui.commands.validate:validate", "Check an inventory and print a summary."),
    "plan": ("tui.commands.plan:plan", "Print the upgrade plan as a tree or JSON."),
    "run": ("tui.commands.run:run", "Drive an upgrade in the console (or --headless)."),
    "runs": ("tui.commands.runs:runs", "List past and current runs."),
    "watch": ("tui.commands.watch:watch", "Follow a run another console drives, read-only."),
    "replay": ("tui.commands.replay:replay", "Replay a past run (read-only)."),
    "report": ("tui.commands.report:report", "The change record of a run (md, html, json)."),
    "check": ("tui.commands.check:check", "Pre-flight every node and site; changes nothing."),
    "lab": ("tui.commands.lab:lab", "Serve the simulated cloud of a lab inventory."),
    "attach": ("tui.commands.control:attach", "Open the console on a running run's engine."),
    "status": ("tui.commands.control:status", "How a run stands (--json for scripts)."),
    "approve": ("tui.commands.control:approve", "Approve a run's open gate."),
    "reject": ("tui.commands.control:reject", "Reject a run's open gate (the run stops)."),
    "retry": ("tui.commands.control:retry", "Retry the failed steps at a failure gate."),
    "skip": ("tui.commands.control:skip", "Skip the failed steps, with --reason."),
    "pause": ("tui.commands.control:pause", "Pause a run (running steps finish)."),
    "continue": ("tui.commands.control:continue_", "Continue a paused run."),
    "abort": ("tui.commands.control:abort", "Abort a run (running commands are terminated)."),
    "serve": ("tui.commands.serve:serve", "Serve a run's console to a browser on 127.0.0.1."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*COMMANDS]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name][0].split(":")
        return getattr(importlib.import_module(module), attr)

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


def main() -> None:
    """Entry point: user errors print one line each to stderr and exit 2, never a traceback."""
    from core.errors import UserError
    from core.yamlsource import SourceError

    try:
        result = cli.main(standalone_mode=False)
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
        sys.exit(result if isinstance(result, int) else 0)
