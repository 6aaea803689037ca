"""The detached engine: `rollgate run` starts the engine as a process of its own (own session,
output to `engine.log` in the run directory), which holds the cloud's lock, writes the
journal and serves the run's control socket; consoles attach to it and may come and go."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rollgate.core.errors import UserError
from rollgate.core.runs import (
    cloud_holder,
    held_by,
    private_dir,
    runs_dir,
    state_home,
    write_private,
)

if TYPE_CHECKING:
    from rollgate.core.session import Session

READY_TIMEOUT = 120.0  # seconds the engine may take to open its run (a lab starts first)


def control_socket(run_dir: Path) -> Path:
    """Where a run's control socket is: always in its run directory (0700, or traversable by
    the run's control group), however long that path is (core/socket_client.py `reachable`)."""
    return run_dir / "control.sock"


def spawn_engine(argv: list[str], stdin_secret: str | None = None) -> str:
    """Start `rollgate run ARGV --engine-process READY` detached from this terminal; return
    the run id once its engine serves the run, or raise UserError with what stopped it.
    `stdin_secret` (the become password) is written to its stdin, never to its argv."""
    logs = private_dir(state_home() / "engine-logs")
    token = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    ready, log = logs / f"{token}.ready", logs / f"{token}.log"
    with open(log, "wb") as out:
        os.chmod(log, 0o600)
        process = subprocess.Popen(
            [
                sys.executable,
                "-P",
                "-m",
                "rollgate",
                "run",
                *argv,
                "--engine-process",
                str(ready),
            ],
            stdin=subprocess.DEVNULL if stdin_secret is None else subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # no terminal: closing it leaves the engine running
            close_fds=True,
        )
    if stdin_secret is not None and process.stdin is not None:
        with contextlib.suppress(BrokenPipeError):
            process.stdin.write(stdin_secret.encode() + b"\n")
        process.stdin.close()
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if ready.is_file() and ready.read_text().strip():
            run_id = ready.read_text().strip()
            ready.unlink(missing_ok=True)
            return run_id
        code = process.poll()
        if code is not None:
            said = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
            last = said[-1] if said else f"the engine exited {code}"
            raise UserError(last.removeprefix("error: "), exit_code=2 if code == 2 else 1)
        time.sleep(0.05)
    process.terminate()
    raise UserError(f"the engine did not start within {READY_TIMEOUT:g}s; see {log}", exit_code=1)


LEAVE_GRACE = 5.0  # seconds running steps get to finish after SIGTERM before the engine leaves


async def engine_main(session: Session, ready: Path, group: str = "") -> int:
    """The detached engine's life: serve the control socket, tell the starter the run id,
    drive the run to its end. SIGTERM or SIGINT leaves the run paused (resumable): nothing new
    starts, running steps get LEAVE_GRACE seconds, then the engine leaves them (a job on a node
    runs on and the next driver follows it to its end; anything else is stopped); a second
    signal leaves at once. SIGHUP is ignored (there is no terminal to lose)."""
    from rollgate.core.control import ControlServer
    from rollgate.core.narrate import exit_code

    engine = session.engine
    run_id = session.run_id
    run_dir = runs_dir() / run_id
    log = ready.with_suffix(".log")
    kept = run_dir / "engine.log"
    n = 1
    while kept.exists():  # a resumed run keeps each engine's output
        n += 1
        kept = run_dir / f"engine.{n}.log"
    with contextlib.suppress(OSError):  # the engine's output, kept with its run
        os.replace(log, kept)
    server = ControlServer(engine, session.header, control_socket(run_dir), group=group)
    await server.start()
    loop = asyncio.get_running_loop()
    operator = engine.options.operator

    signalled: list[str] = []

    def on_signal(name: str) -> None:
        if signalled:  # again: leave the running steps now
            engine.leave_now()
            return
        signalled.append(name)
        engine.leave_paused(
            f"signal:{name} by {operator}", f"{name}: the engine stopped; resumable"
        )
        loop.call_later(LEAVE_GRACE, engine.leave_now)

    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, on_signal, signum.name)
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGHUP, lambda: None)
    write_private(run_dir / "engine.pid", str(os.getpid()))
    tmp = ready.with_suffix(".tmp")
    tmp.write_text(run_id)
    os.replace(tmp, ready)  # the starter reads a whole id or nothing
    try:
        outcome = await engine.run()
    finally:
        await server.close()
        with contextlib.suppress(OSError):
            (run_dir / "engine.pid").unlink()
    why = f": {engine.state.error}" if engine.state.error else ""  # a full disk, a bug
    print(f"run {outcome}{why}; journal: {session.journal_path}", flush=True)
    return exit_code(outcome)


def check_can_start(
    inventory_path: str, refuse_outside_window: bool, resume: str | None, group: str = ""
) -> None:
    """What refuses a start, checked before detaching: the inventory, the window (when no
    console will ask), a driver already running the cloud."""
    from rollgate.core.inventory import load_inventory
    from rollgate.core.runs import driver_alive
    from rollgate.core.window import resolve as resolve_window

    if group:
        import grp

        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise UserError(f"--control-group {group!r}: no such group on this machine") from None
        from rollgate.core.runs import unreachable_by_group

        home = state_home()
        blocked = unreachable_by_group(home.parent, gid)  # Rollgate opens what it makes itself
        if blocked is not None:
            raise UserError(
                f"--control-group {group}: its members cannot pass through {blocked}; set "
                "ROLLGATE_STATE_DIR to a place they can reach (every directory above it "
                "passable by them)"
            )
    inventory = load_inventory(inventory_path)
    if driver_alive(inventory.cloud):
        raise UserError(
            f"another driver runs cloud {inventory.cloud!r} now: "
            f"{held_by(cloud_holder(inventory.cloud))}; not starting a second one"
        )
    if refuse_outside_window and not resume:
        window = resolve_window(inventory.window, None)
        reason = window.outside() if window is not None else ""
        if reason:
            from rollgate.core.plan import build_plan

            plan = build_plan(inventory)
            if not any(p.tier == "prepare" for p in plan.phases):
                raise UserError(f"{reason}; start inside it, or add --outside-window to run anyway")
