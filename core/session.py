"""A run session: inventory + plan + executor + journal + lock + engine, ready to drive.

`open_session` is what `rollgate run` (headless or console) uses; tests build runs the same way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import json
import os
import shutil
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from rollgate.core import events as ev
from rollgate.core.engine import Engine, EngineOptions
from rollgate.core.engine.client import EngineClient
from rollgate.core.errors import UserError
from rollgate.core.estimate import past_pace
from rollgate.core.executor import Executor
from rollgate.core.inventory import Inventory, load_inventory
from rollgate.core.journal import JournalWriteError, JournalWriter, read_header, read_journal
from rollgate.core.notify import Notifier
from rollgate.core.plan import Plan, PlanJSON, build_plan, plan_record
from rollgate.core.preflight import job_root
from rollgate.core.recipes import load_recipe
from rollgate.core.rollback import RollbackRequest
from rollgate.core.runs import (
    RunLock,
    cloud_lock,
    make_dirs,
    new_run_id,
    private_dir,
    resolve_journal,
    resume_command,
    runs_dir,
    share_with_group,
    write_private,
)
from rollgate.core.secrets import Secrets, become_passwords
from rollgate.core.secrets import resolve as resolve_secrets
from rollgate.core.window import Window
from rollgate.core.window import resolve as resolve_window
from rollgate.core.words import RUN_FINAL


@dataclass
class RunOptions:
    operator: str = ""
    auto_approve: bool = False
    dry_run: bool = False
    journal: str | None = None
    resume: str | None = None
    lab_inprocess: bool = False
    time_scale: float | None = None
    faults: list[str] = field(default_factory=list)
    insecure: bool = False  # --no-verify-host-keys
    lab_read_only: bool = False  # check: the lab's world as a new run finds it, never saved
    outside_window: bool = False  # --outside-window: the operator starts outside it knowingly
    refuse_outside_window: bool = False  # headless: outside the window is a usage error
    control_group: str = ""  # --control-group: the run's socket is reachable by this group
    # --ask-become-pass: the sudo password asked at the start (in memory only, never shown)
    become_password: str | None = field(default=None, repr=False)
    # `rollgate rollback`: this run undoes another's phases at a site (core/rollback.py)
    rollback: RollbackRequest | None = None


@dataclass
class Session:
    inventory: Inventory
    plan: Plan
    engine: Engine
    client: EngineClient
    header: dict[str, Any]
    journal_path: Path
    run_dir: Path
    notices: list[str]
    window: Window | None = None

    @property
    def run_id(self) -> str:
        return str(self.header["run_id"])


def _check_window(window: Window | None, options: RunOptions, plan: Plan) -> None:
    """Headless, a start outside the maintenance window is refused unless asked for (the
    console asks at a gate instead). A plan that prepares before the window (kolla) starts:
    its preparation runs, and the run stops, paused, at the window's gate."""
    if window is None or options.outside_window or not options.refuse_outside_window:
        return
    if any(p.tier == "prepare" for p in plan.phases):
        return
    if reason := window.outside():
        raise UserError(f"{reason}; start inside it, or add --outside-window to run anyway")


def default_operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "operator")


def tool_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rollgate")
    except PackageNotFoundError:
        return "0+unknown"


def _plan_differences(old: dict[str, Any], new: Plan) -> str:
    old_ids = [s["id"] for p in old.get("phases", []) for st in p["stages"] for s in st["steps"]]
    new_ids = [s.id for s in new.steps]
    old_set, new_set = set(old_ids), set(new_ids)  # linear: 70,000 steps compare at once
    added = [i for i in new_ids if i not in old_set]
    removed = [i for i in old_ids if i not in new_set]
    parts = []
    if added:
        parts.append(f"{len(added)} steps added (first: {added[0]})")
    if removed:
        parts.append(f"{len(removed)} steps removed (first: {removed[0]})")
    if not parts:
        parts.append("the same steps with different commands, gates or policy")
    return "; ".join(parts)


def lab_time_scale(inventory: Inventory, options: RunOptions) -> float:
    """The lab's time scale when the run drives the lab (its services start in that many
    times their real seconds), else 1."""
    if inventory.lab is None:
        return 1.0
    return options.time_scale if options.time_scale is not None else inventory.lab.time_scale


@contextlib.asynccontextmanager
async def open_executor(
    inventory: Inventory, options: RunOptions, notices: list[str]
) -> AsyncIterator[tuple[Executor, Inventory]]:
    """Make the executor for this inventory: the one place that chooses how steps run.

    --dry-run: nothing runs. A `lab:` section: the lab starts (over SSH and HTTP on loopback,
    or in-process with --lab-inprocess). Otherwise: SSH to the nodes and the OpenStack API.
    """
    if options.dry_run:
        from rollgate.core.transports.dryrun import DryRunExecutor

        notices.append("dry run: nothing is executed; each step says what it would run")
        yield DryRunExecutor(), inventory
        return
    if inventory.lab is not None:
        from rollgate.core.lab import Lab

        lab = await Lab.start(
            inventory,
            time_scale=options.time_scale,
            faults=options.faults or None,
            serve=not options.lab_inprocess,
            persist=not options.lab_read_only,
            # check sees the world a new run starts from; a rollback, the world its run left
            restore=bool(options.resume or options.rollback),
        )
        try:
            if options.lab_inprocess:
                notices.append("lab: in-process (no SSH or HTTP)")
                yield lab.executor(), lab.effective_inventory
            else:
                from rollgate.core.transports.real import RealExecutor

                notices.append(f"lab: nodes answer SSH on loopback; clouds.yaml {lab.clouds_yaml}")
                if options.insecure:
                    notices.append(
                        "WARNING: SSH host keys are NOT verified (--no-verify-host-keys); "
                        "anyone on the path could impersonate the nodes"
                    )
                executor = RealExecutor(
                    lab.effective_inventory,
                    insecure=options.insecure,
                    run_id="lab",
                    become_passwords=become_passwords(
                        lab.effective_inventory, options.become_password
                    ),
                )
                try:
                    yield executor, lab.effective_inventory
                finally:
                    await executor.close()
        finally:
            await lab.close()
        return
    try:
        from rollgate.core.transports.real import RealExecutor
    except ImportError:
        raise UserError(
            "real SSH/API transports are not available in this build; use "
            "--dry-run or an inventory with a lab: section"
        ) from None
    executor = RealExecutor(
        inventory,
        insecure=options.insecure,
        run_id="",
        become_passwords=become_passwords(inventory, options.become_password),
    )
    if executor.unverified:
        notices.append(
            "WARNING: SSH host keys are NOT verified for some or all nodes; anyone "
            "on the path can impersonate them"
        )
    try:
        yield executor, inventory
    finally:
        await executor.close()


def _prepare(
    inventory_path: str, inventory: Inventory, plan: Plan, operator: str, options: RunOptions
) -> tuple[list[Any], dict[str, Any], Path, Path]:
    """Under the lock: read the journal to resume, or make the new run's directory."""
    history: list[Any] = []
    if options.resume:
        journal_path = resolve_journal(options.resume)
        contents = read_journal(journal_path)
        header = contents.header
        run_dir = journal_path.parent
        if header.get("inventory_digest") != inventory.digest:
            raise UserError(
                f"{inventory_path} changed since run {header.get('run_id')} started (inventory "
                f"digest {str(header.get('inventory_digest'))[:12]} -> {inventory.digest[:12]}); "
                "resume with the inventory as it was, or start a new run"
            )
        if header.get("plan_digest") != plan.digest:
            old_plan: dict[str, Any] = {}
            with contextlib.suppress(OSError, ValueError):
                old_plan = json.loads((run_dir / "plan.json").read_text())
            raise UserError(
                f"the plan changed since run {header.get('run_id')} started "
                f"({_plan_differences(old_plan, plan)}); resume with the same Rollgate version "
                "and inventory, or start a new run"
            )
        if bool(header.get("dry_run")) != options.dry_run:
            raise UserError(
                f"run {header.get('run_id')} was "
                + (
                    "a dry run: it cannot be resumed as a real run; start a new run"
                    if header.get("dry_run")
                    else "a real run: resume it without --dry-run"
                )
            )
        history = contents.events
        # the last RunFinished says how the run ended, whatever a journal holds after it
        ended = next((e for e in reversed(history) if isinstance(e, ev.RunFinished)), None)
        if ended is not None and ended.outcome in RUN_FINAL:
            raise UserError(
                f"run {header.get('run_id')} is already {ended.outcome}; nothing to resume"
            )
    else:
        run_id = new_run_id(inventory.cloud)
        run_dir = runs_dir() / run_id
        journal_path = (
            Path(options.journal).expanduser() if options.journal else (run_dir / "journal.jsonl")
        )
        if options.journal and journal_path.exists() and journal_path.stat().st_size > 0:
            raise UserError(
                f"{journal_path} already exists; resume it with --resume "
                f"{journal_path}, or choose another --journal path"
            )
        try:
            make_dirs(journal_path.parent)
            private_dir(run_dir)
            if options.control_group:
                share_with_group(run_dir, options.control_group)
        except OSError as exc:
            raise UserError(
                f"cannot make {exc.filename or run_dir}: {exc.strerror}; check the state "
                "directory (ROLLGATE_STATE_DIR) or --journal"
            ) from None
        plan_bytes, layout = plan_record(plan)
        header = {
            "tool_version": tool_version(),
            "run_id": run_id,
            "cloud": inventory.cloud,
            "from": plan.source,
            "to": plan.target,
            "skip_level": plan.skip_level,
            "inventory": str(Path(inventory_path).resolve()),
            "inventory_digest": inventory.digest,
            "plan_digest": plan.digest,
            "operator": operator,
            "dry_run": options.dry_run,
            "host": socket.gethostname(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            # the journal alone is enough to replay the run; the layout, before it, lets a
            # reader build it a phase at a time
            "plan_layout": layout,
            "plan": orjson.Fragment(plan_bytes),
        }
        if options.rollback is not None:  # what it undoes, for resume, replay and the report
            header["rollback"] = dataclasses.asdict(options.rollback)
        window = resolve_window(inventory.window, None)
        if window is not None:  # the change record says whether the run stayed inside it
            header["window"] = {"start": window.start, "end": window.end}
        write_private(run_dir / "plan.json", plan_bytes)
        if options.journal:
            write_private(run_dir / "journal.path", str(journal_path.resolve()))
    return history, header, journal_path, run_dir


def plan_for(inventory: Inventory, options: RunOptions) -> Plan:
    """The upgrade's plan, or a rollback's (a resumed rollback's, from its journal header)."""
    request = options.rollback
    if request is None and options.resume:
        with contextlib.suppress(UserError, OSError, ValueError):
            said = read_header(resolve_journal(options.resume)).get("rollback")
            if said:
                request = RollbackRequest(**said)
                options.rollback = request
    if request is None:
        return build_plan(inventory)
    from rollgate.core.rollback import build_rollback_plan

    contents = read_journal(resolve_journal(request.run))
    return build_rollback_plan(inventory, contents.header, contents.events, request)


@contextlib.asynccontextmanager
async def open_session(inventory_path: str, options: RunOptions) -> AsyncIterator[Session]:
    inventory = load_inventory(inventory_path)
    # a resume reads its journal (is it a rollback's?) only under the cloud's lock
    plan = None if options.resume else plan_for(inventory, options)
    operator = options.operator or default_operator()
    # Lock first, then read: a run that ends while `--resume` reads its journal must not be
    # resumed as if it had not finished; and a refused start leaves nothing behind.
    secrets = resolve_secrets(inventory.spec)  # a missing value refuses the start, exit 2
    sudo = become_passwords(inventory, options.become_password)  # masked wherever it shows
    secrets = Secrets({**secrets.values, **{f"become:{n}": v for n, v in sudo.items()}})
    if plan is not None:  # a resume is checked once its first start is known
        _check_window(resolve_window(inventory.window, None), options, plan)
    lock: RunLock = cloud_lock(inventory.cloud)
    lock.acquire()
    try:
        if plan is None:
            plan = plan_for(inventory, options)
        history, header, journal_path, run_dir = _prepare(
            inventory_path, inventory, plan, operator, options
        )
        lock.describe(str(header["run_id"]))
    except BaseException:
        lock.release()
        raise
    first = next((e.time for e in history if isinstance(e, ev.RunStarted)), None)
    window = resolve_window(inventory.window, first)
    if options.resume:
        try:
            _check_window(window, options, plan)
        except UserError:
            lock.release()
            raise
    variables = {
        **load_recipe(inventory.method).variables,
        **(inventory.spec.recipe.variables if inventory.spec.recipe else {}),
    }
    journal: JournalWriter | None = None
    try:
        try:
            journal = JournalWriter(journal_path, None if options.resume else header)
        except (OSError, JournalWriteError) as exc:
            if not options.resume:  # a refused start leaves no run directory behind
                shutil.rmtree(run_dir, ignore_errors=True)
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise UserError(
                f"cannot write the journal {journal_path}: {reason}; choose a writable "
                "--journal or free space"
            ) from None
        # the journal has the plan now; what stays in memory makes its JSON when it is asked
        header["plan"] = PlanJSON(plan)
        header.pop("plan_layout", None)
        notices: list[str] = []
        if options.resume:
            notices.append(f"resuming run {header.get('run_id')} from event {len(history)}")
        from rollgate.core.lifecycle import warnings as lifecycle_warnings

        lifecycle = [] if options.rollback else lifecycle_warnings(inventory.upgrade)
        notices += [f"warning: {line}" for line in lifecycle]
        async with open_executor(inventory, options, notices) as (executor, effective):
            engine = Engine(
                plan,
                effective,
                executor,
                EngineOptions(
                    operator=operator,
                    run_id=str(header["run_id"]),
                    auto_approve=options.auto_approve,
                    secrets=secrets,
                    dry_run=options.dry_run,
                    job_root=job_root(inventory),
                    keep_jobs=variables.get("keep_jobs", "no") == "yes",
                    backup_root=journal_path.parent / "backups",  # pull_backups: "yes"
                    window=window,
                    outside_window=options.outside_window,
                    host=socket.gethostname(),
                    past_pace=past_pace(inventory.cloud, str(header["run_id"])),
                    notifier=Notifier.from_spec(
                        inventory.spec.notify, str(header["run_id"]), inventory.cloud
                    ),
                    time_scale=lab_time_scale(inventory, options),
                    notes=tuple(lifecycle),
                    resume_command=resume_command(header),
                ),
                journal=journal,
                history=history,
            )
            yield Session(
                effective,
                plan,
                engine,
                EngineClient(engine, header),
                header,
                journal_path,
                run_dir,
                notices,
                window,
            )
    finally:
        if journal is not None:
            journal.close()
        lock.release()
