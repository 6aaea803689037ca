"""`rollgate attach | status | approve | reject | retry | skip | pause | continue | abort RUN`:
reach a detached engine through its control socket, from a console or a script."""

from __future__ import annotations

import asyncio
import getpass
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rollgate.core.errors import UserError
from rollgate.core.runs import ended_outcome, resume_command_of

if TYPE_CHECKING:
    from rollgate.core.socket_client import SocketClient


def engine_client(
    run: str, name: str = "", *, read_only: bool = False, plan: bool = True
) -> SocketClient:
    """A socket client of RUN's engine, with its plan and header; UserError when none answers.
    `read_only`: it only watches (commands are refused, it does not count as attached).
    `plan` False: without them (the header of 10,000 nodes is 100 MB, and a status or a
    decision needs none of it); the engine is asked how the run stands instead."""
    from rollgate.core.client import EngineGone, NotTheEngine
    from rollgate.core.detach import control_socket
    from rollgate.core.runs import resolve_journal
    from rollgate.core.socket_client import SocketClient

    journal = resolve_journal(run)
    path = control_socket(journal.parent)
    client = SocketClient(path, None, {}, name=name, read_only=read_only)
    ask = {"op": "header", "plan": False} if plan else {"op": "status"}
    try:
        answer = asyncio.run(client.request_line(ask))
    except NotTheEngine as exc:
        raise UserError(str(exc), exit_code=1) from None
    except EngineGone:
        ended = ended_outcome(run)
        if ended is not None and ended.startswith("complete"):  # nothing left to resume
            raise UserError(
                f"run {run} has ended ({ended}); no engine serves it: `rollgate report {run}` "
                f"says what it did, `rollgate replay {run}` shows it",
                exit_code=1,
            ) from None
        if ended is not None:  # paused, stopped, aborted, failed: resumable
            raise UserError(
                f"run {run} ended {ended}; no engine serves it: resume it with "
                f"`{resume_command_of(run)}`",
                exit_code=1,
            ) from None
        raise UserError(
            f"no engine serves run {run} (its engine was lost): `rollgate status "
            f"{run}` says how it stands; resume it with `{resume_command_of(run)}`",
            exit_code=1,
        ) from None
    if plan:  # its models are imported only here: a status or a decision needs none
        _with_plan(client, journal, answer)
    return client


def _with_plan(client: SocketClient, journal: Path, answer: bytes) -> None:
    """Give `client` the run's header and plan: the plan from the run's journal where this
    login may read it (the engine's loop then spends nothing on it), else from the engine,
    a phase at a time either way."""
    from rollgate.core.client import journal_plan
    from rollgate.core.journal_index import paused_gc
    from rollgate.core.plan import Plan, plan_from_record, split_header_answer

    header, record = split_header_answer(answer)
    # as asked, the header alone (an engine from before "plan": false sends the plan anyway)
    if "plan" not in header and record is None:
        found = journal_plan(journal, header)
        if found is not None:
            client.header, client.plan = header, found
            return
        header, record = split_header_answer(asyncio.run(client.request_line({"op": "header"})))
    if record is not None:  # built a phase at a time, as a replay reads it
        with paused_gc():
            client.plan = plan_from_record(record, header.pop("plan_layout"))
    else:  # an engine that sends its plan whole
        client.plan = Plan.from_dict(header.pop("plan"), consume=True)
    client.header = header


def attach_console(run: str, *, hint: str = "", name: str = "") -> int:
    """The console on a running run's engine; closing it leaves the run going. `name`: who
    decides, journalled beside the login the engine reads from the socket."""
    from rollgate.tui.app import RollgateApp
    from rollgate.tui.commands.serve import die_with_server
    from rollgate.tui.gc_policy import tuned_gc

    die_with_server()
    client = engine_client(run, name=name)
    app = RollgateApp(
        client,
        operator=name or getpass.getuser(),
        resume_hint=hint or resume_command_of(run),
    )
    with tuned_gc(console=True):
        app.run()
    if app.error:
        raise UserError(app.error)
    if app.state.finished is not None:
        from rollgate.core.narrate import exit_code
        from rollgate.core.report import run_outcome

        outcome = run_outcome(app.state)
        click.echo(f"run {outcome}; report: rollgate report {run}")
        return exit_code(outcome)
    click.echo(f"detached; the run goes on. Back with: rollgate attach {run}")
    return 0


@click.command()
@click.argument("run")
@click.option("--name", default="", help="Your name for the journal (besides your login).")
def attach(run: str, name: str) -> int:
    """Open the console on RUN, a run whose engine is running (any number of consoles)."""
    return attach_console(run, name=name)


@click.command()
@click.argument("run")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable: state, gate, progress.")
def status(run: str, as_json: bool) -> int:
    """How RUN stands: its state, the gate it waits at, progress and the estimate; also for
    finished runs and runs whose engine was lost."""
    data = _status(run)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return 0
    click.echo(f"run {data['run_id']}: {data['state']}")
    progress = data.get("progress") or {}
    if progress:
        click.echo(f"steps: {progress['steps_done']}/{progress['steps']} done")
    left = (data.get("estimate") or {}).get("seconds_left")
    if left:
        from rollgate.core.durations import span_words

        click.echo(f"estimate: about {span_words(left)} of work left")
    gate = data.get("gate")
    if gate:
        click.echo(f"waiting at gate ({gate['kind']}) {gate['title']}")
        for choice in gate.get("choices") or gate["options"]:
            click.echo(f"  · {choice}")
        click.echo(f"decide with: rollgate {'|'.join(_verbs(gate['options']))} {run}")
    for problem in data.get("problems") or []:
        click.echo(
            f"{problem['outcome']}: {problem['title']} on {problem['node']}"
            + (f" ({problem['error']})" if problem["error"] else "")
            + (f"; {problem['decision']} by {problem['decided_by']}" if problem["decision"] else "")
        )
    if data.get("attached"):
        click.echo(f"attached: {', '.join(data['attached'])}")
    if data.get("recovered"):
        click.echo(
            f"the journal was lost, cut short or damaged; the run's record is in "
            f"{data['recovered']} (rollgate replay {data['recovered']})"
        )
    return 0


def _verbs(options: list[str]) -> list[str]:
    return [VERB_OF.get(o, o) for o in options]


def _status(run: str) -> dict[str, Any]:
    from rollgate.core.client import EngineGone

    try:
        client = engine_client(run, plan=False)
        answer: dict[str, Any] = asyncio.run(client.request({"op": "status"}))
        return answer
    except (UserError, EngineGone):
        pass
    from rollgate.core.client import open_journal_client
    from rollgate.core.control import ended_not_upgraded
    from rollgate.core.problems import problem_records
    from rollgate.core.report import run_outcome
    from rollgate.core.runs import NO_DRIVER, driver_alive, recovered_copy
    from rollgate.core.state import fold

    copy = recovered_copy(run)  # the run's journal was lost, cut short or damaged
    try:
        journal = open_journal_client(run)
        events = journal.all_events()
    except UserError:  # no journal any more, or a damaged one
        if copy is None:
            raise
        journal = open_journal_client(str(copy))  # what the run recorded, all there is
        events = journal.all_events()
    state = fold(journal.plan, events)
    word = run_outcome(state)
    if state.finished is None:
        alive = driver_alive(str(journal.header.get("cloud", "")))
        word = "running (driven by a console in the foreground)" if alive else NO_DRIVER
    done = sum(1 for s in state.steps.values() if s.done)
    return {
        "run_id": state.run_id or journal.header.get("run_id"),
        "state": word,
        "gate": None,
        "progress": {"steps_done": done, "steps": len(state.steps)},
        "estimate": {"seconds_left": None},
        "attached": [],
        "driver": state.operator,
        "problems": problem_records(journal.plan, state),
        "not_upgraded": ended_not_upgraded(journal.plan, state),
        **({"recovered": str(copy)} if copy is not None else {}),
    }


# command-line verb -> the engine's command kind ("continue": `run --resume` means resume)
KIND_OF = {
    "approve": "approve",
    "reject": "reject",
    "retry": "retry",
    "skip": "skip",
    "pause": "pause",
    "continue": "resume",
    "abort": "abort",
}
VERB_OF = {kind: verb for verb, kind in KIND_OF.items()}


def _decide(verb: str) -> click.Command:
    @click.command(name=verb)
    @click.argument("run")
    @click.option("--comment", "--reason", "comment", default="", help="Journalled with it.")
    @click.option("--name", default="", help="Your name for the journal (besides your login).")
    @click.option(
        "--twins",
        is_flag=True,
        hidden=verb != "approve",
        help="Approve the open gate and the gates of the other sites that ask the same "
        "question, each as it opens (journalled one by one).",
    )
    def command(run: str, comment: str, name: str, twins: bool) -> int:
        from rollgate.core.client import CommandRejected, EngineGone
        from rollgate.core.events import Command

        if verb == "skip" and not comment.strip():
            raise click.UsageError("skip needs --reason: why the step is left not run")
        client = engine_client(run, name=name, plan=twins)  # its twins are found in the plan
        gate = None
        try:
            if verb not in ("pause", "continue", "abort"):
                status = asyncio.run(client.request({"op": "status"}))
                gate = (status.get("gate") or {}).get("id")
                if gate is None:
                    click.echo(f"refused: run {run} waits at no gate", err=True)
                    return 1
            if twins and verb != "approve":
                raise click.UsageError("--twins goes with approve only")
            together = ("all",) if twins else ()
            asyncio.run(client.send(Command(KIND_OF[verb], name, comment, gate, together)))
        except (CommandRejected, EngineGone) as exc:
            click.echo(f"refused: {exc}", err=True)
            return 1
        if twins and gate is not None:
            from rollgate.core.twins import twins_of

            named = ", ".join(g.id for _, g in twins_of(client.plan, gate, set()))
            click.echo(f"approve: done, and its twins as they open: {named or 'none left'}")
            return 0
        click.echo(f"{verb}: done")
        return 0

    command.help = f"{verb.capitalize()} at RUN's open gate (or the run itself), from a script."
    return command


approve, reject, retry, skip, pause, continue_, abort = (_decide(v) for v in KIND_OF)
