"""The step runner: one step of the plan to an outcome, journalled. It waits while the run is
paused, asks the step's gate, runs the command or API call through the executor (transport
errors retried with backoff; a job that started is re-attached, never started twice), checks
what a check printed against what the plan expects, and tells what the step showed about its
node. Steps a stopped driver left running are followed to their end here too."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

from rollgate.core import events as ev
from rollgate.core.backup_pull import BackupReceiver
from rollgate.core.engine.checks import (
    INSTALLS,
    NOT_RUNNING_WORDS,
    reads_all_lines,
    running,
    unknown_facts,
    wrong_output,
)
from rollgate.core.engine.gates import Gates, runtime
from rollgate.core.engine.intake import Intake
from rollgate.core.engine.options import BUILD_ACTIONS, HEARTBEAT_WAITS, EngineOptions
from rollgate.core.engine.record import Halted, Record
from rollgate.core.executor import (
    LEFT_AS_FOUND,
    BecomeFailed,
    CommandResult,
    Executor,
    Stopped,
    TransportError,
    within,
)
from rollgate.core.inventory import Inventory, Node
from rollgate.core.plan import Plan, Step
from rollgate.core.state import RunState
from rollgate.core.transports.remote_job import job_name, run_dir
from rollgate.core.words import STEP_DEVIATION, STEP_FAILED, STEP_NOT_NEEDED, STEP_OK

Outcome = tuple[str, int | None, str]  # (outcome word, exit status, error)


# dpkg's line for a package an install configured: "Setting up PKG (VERSION) ..."
SETTING_UP = re.compile(r"^Setting up (\S+) \(([^)]+)\)")


class StepRunner:
    def __init__(
        self,
        plan: Plan,
        inventory: Inventory,
        executor: Executor,
        options: EngineOptions,
        record: Record,
        intake: Intake,
        gates: Gates,
    ):
        self.plan = plan
        self.executor = executor
        self.options = options
        self.record = record
        self.intake = intake
        self.gates = gates
        self.nodes = {n.name: n for n in inventory.nodes}
        self.lab_time_scale = inventory.lab.time_scale if inventory.lab is not None else 1.0
        self.sites = {s.name: s for s in inventory.sites}
        self.unstoppable = False  # a command that could not be verified stopped
        self.left_running = False  # a job the driver left running (the next one follows it)
        # step -> what it printed on standard output: every line for the checks that read
        # them all (core/engine/checks.py), else the last one
        self._printed: dict[str, list[str]] = {}

    @property
    def state(self) -> RunState:
        return self.record.state

    async def run(self, step: Step) -> str:
        """Run `step` once to an outcome word; raises Halted when the run is ending."""
        phase = self.state.steps[step.id].phase
        await self.intake.wait_runnable(phase)
        if why := self._not_needed(step):
            attempt = self.state.steps[step.id].attempts
            self.record.emit(
                ev.StepFinished, step=step.id, attempt=attempt, outcome=STEP_NOT_NEEDED, error=why
            )
            return STEP_NOT_NEEDED
        if step.gate is not None:
            await self.gates.plan_gate(step.gate)
            await self.intake.wait_runnable(phase)
        attempt = self.state.steps[step.id].attempts + 1
        command = runtime(step.command, self.options.run_id)
        self.record.emit(
            ev.StepStarted, step=step.id, node=step.node, attempt=attempt, command=command
        )
        await self.record.commit()
        started = self.record.monotonic()
        outcome, status, error = await self._execute(step, attempt)
        self.record.flush_output(step.id)
        if outcome in STEP_FAILED and outcome != "interrupted" and step.args.get("deviation"):
            outcome = STEP_DEVIATION  # the final verification: said, and the run goes on
        if outcome == "warning":
            decision, comment = await self.gates.warning(step, status, error)
            if decision == "reject":
                outcome, error = "failed", f"warning rejected by the operator: {comment}"
        self.record.emit(
            ev.StepFinished,
            step=step.id,
            attempt=attempt,
            outcome=outcome,
            exit_status=status,
            error=error,
            duration=round(self.record.monotonic() - started, 3),
        )
        self._after(step, outcome)
        self.intake.check()
        return outcome

    def _not_needed(self, step: Step) -> str:
        """Why a conditional step has nothing to do ("" when it must run): its `when` names an
        earlier step and the outcome that calls for it (a check that warned)."""
        when = step.args.get("when")
        if not when or self.options.dry_run:  # a dry run shows what could run
            return ""
        found = self.state.steps.get(str(when["step"]))
        if found is not None and found.status == when["outcome"]:
            return ""
        title = self.plan.step(str(when["step"])).title
        return f"'{title}' found nothing to do"

    def _after(self, step: Step, outcome: str) -> None:
        """What a finished step tells about its node: fenced, version, reachable."""
        emit = self.record.emit
        lines = self._printed.pop(step.id, [])
        printed = lines[-1] if lines else ""  # its last line of standard output
        if step.action == "verify-version" and printed:  # what the install put on disk
            emit(
                ev.NodeStatus,
                node=step.node,
                package=step.args.get("package"),
                installed=printed,
                reachable=True,
            )
        if step.action in INSTALLS:  # what moved beyond the named packages
            named = set(step.args.get("packages", ()))
            for line in lines:
                moved = SETTING_UP.match(line)
                if moved and moved.group(1) not in named:
                    emit(ev.NodeStatus, node=step.node, package=moved.group(1),
                         installed=moved.group(2))  # fmt: skip
        if step.action == "running-version" and lines:  # the probe ran and said
            for found in running(step, lines):  # what the processes run (or that they do not)
                word = found.version or found.said.split()[0].rstrip(":")
                if word in NOT_RUNNING_WORDS or found.version:
                    emit(ev.NodeStatus, node=step.node, package=found.package, version=word)
        if outcome not in STEP_OK:
            return
        node = self.state.nodes[step.node]
        if step.action == "disable-compute":
            emit(ev.NodeStatus, node=step.node, disabled=True)
        elif step.action == "enable-compute":  # unless an operator had fenced it before
            tail = self.state.steps[step.id].tail
            kept = bool(tail) and LEFT_AS_FOUND in tail[-1]
            emit(ev.NodeStatus, node=step.node, disabled=kept)
        elif step.action == "record-version" and printed:
            package = step.args.get("package")
            emit(
                ev.NodeStatus,
                node=step.node,
                package=package,
                reachable=True,
                version_before=printed,
            )
        elif step.executor == "ssh" and node.reachable is False:
            emit(ev.NodeStatus, node=step.node, reachable=True)  # it answered again

    # ---------------------------------------------------------------- running it

    async def _execute(self, step: Step, attempt: int) -> Outcome:
        """Run a step to an outcome: transport errors retried with backoff (a job that started
        is re-attached, never started again), `repeat` looped (each run its own job)."""
        node = self.nodes[step.node]
        timeout, limit = self.timeout(step)
        retries_left = int(self.plan.policy.get("transport_retries", 3))
        delay = self.options.backoff
        runs = 0
        into_buffer = self.record.collector(step.id)
        pulling = step.action.startswith("pull-") and not self.options.dry_run
        receiver: BackupReceiver | None = None

        every_line = reads_all_lines(step)

        def collect(stream: str, line: str) -> None:
            if stream == "stdout" and receiver is not None:  # a file's bytes: to disk
                receiver.line(line)
                return
            if stream == "stdout":  # what checks compare
                if every_line:
                    self._printed.setdefault(step.id, []).append(line)
                else:
                    self._printed[step.id] = [line]
            into_buffer(stream, line)

        if step.args.get("settle") and not self.options.dry_run:
            scale = self.options.time_scale
            grace = float(self.plan.policy.get("start_grace", 0)) * (
                self.lab_time_scale if scale is None else scale
            )
            if grace > 0:
                collect("info", f"waiting {grace:g}s, the services' start window "
                        "(policy.start_grace), before reading what runs")  # fmt: skip
                try:
                    await within(asyncio.sleep(grace), None, self.intake.stop_signal)
                except Stopped:
                    return "interrupted", None, "stopped during the start window (the run ends)"

        while True:
            self._printed.pop(step.id, None)  # each run's own output is what is checked
            job = self.job(step, attempt) + (f".{runs}" if runs else "")
            if pulling:  # read-only, run again on a retry: no job (it would keep a copy)
                if self.options.backup_root is None:
                    return "failed", None, "no run directory to copy backups into"
                receiver = BackupReceiver(self.options.backup_root / step.node)
                job = ""
            try:
                result = await self._call(step, node, collect, timeout, job)
            except TransportError as exc:
                if exc.retryable and retries_left > 0:
                    collect("info", f"{exc}; retrying in {delay:g}s")
                    retries_left -= 1
                    try:
                        await within(asyncio.sleep(delay), None, self.intake.stop_signal)
                    except Stopped:
                        return "interrupted", None, "stopped between retries (the run ends)"
                    delay *= 2
                    continue
                if isinstance(exc, BecomeFailed):  # reached; sudo ran nothing: no exit status
                    return "failed", None, str(exc)
                if step.executor == "cloud":  # the API, not the node, did not answer
                    self.record.emit(ev.NodeStatus, node=step.node, services={"api": "unreachable"})
                else:
                    self.record.emit(ev.NodeStatus, node=step.node, reachable=False)
                return "unreachable", None, str(exc)
            if result.left_running:  # its job directory stays, for the next driver
                self.left_running = True
                return "interrupted", None, result.error or "the driver left it running"
            if result.interrupted or result.timed_out:
                if result.terminated is not True and step.executor == "ssh":
                    self.unstoppable = True  # its job directory stays, to look at
                outcome = "interrupted" if result.interrupted else "timed_out"
                error = result.error or f"timed out after {timeout:g}s"
                if result.timed_out and limit == "policy.heartbeat_timeout":
                    error += f" (no heartbeat within {timeout:g}s: {limit})"
                elif result.timed_out and limit != "policy.step_timeout":
                    error += f" ({limit})"
                return outcome, None, error
            if result.exit_status is None:
                return "failed", None, result.error or "no exit status"
            outcome = step.exit_codes.get(result.exit_status, "failed")
            runs += 1
            if outcome == "repeat":
                if runs >= step.repeat_max:
                    return (
                        "failed",
                        result.exit_status,
                        f"still exit {result.exit_status} (more to do) after {runs} runs",
                    )
                continue
            error = (
                ""
                if outcome in ("ok", "warning")
                else (result.error or f"exit status {result.exit_status}")
            )
            if outcome == "ok" and "backup" in step.args and not self.options.dry_run:
                self._backed_up(step)
            if outcome == "ok" and receiver is not None:
                wrong = receiver.finish()
                if wrong:
                    outcome, error = "failed", f"the copy of the backup is not whole: {wrong}"
                else:
                    self._pulled(step, receiver)
            elif outcome in ("ok", "failed") and not self.options.dry_run:
                lines = self._printed.get(step.id, [])
                # a probe that failed says why in its own words (running-version's exit 3);
                # any other failed check keeps its exit status and the tool's error
                probe = "expect_running" in step.args
                # who was left out walks every node: only a whole-site check asks
                left_out = (
                    self._left_out() if "expect_service_version" in step.args else frozenset()
                )
                wrong = wrong_output(step, lines, left_out) if outcome == "ok" or probe else ""
                if wrong:  # a failed probe's own words say more than its exit status
                    outcome, error = "failed", wrong
                elif outcome == "ok" and (unknown := unknown_facts(step)):
                    outcome, error = "warning", unknown
            if outcome == "failed" and step.args.get("hint"):
                error = f"{error}: {step.args['hint']}"
            return outcome, result.exit_status, error

    def _left_out(self) -> frozenset[str]:
        """Nodes an operator left not upgraded (skipped) or that failed or could not be
        reached: checks of the whole site do not fail again for them."""
        words = ("skipped", "failed", "unreachable")
        return frozenset(n for n, node in self.state.nodes.items() if node.status in words)

    def _backed_up(self, step: Step) -> None:
        """Journal what a restore needs of the backup the step took: the dump's path and
        sha256 (`sha256sum`'s line, the step's last output), or where the method keeps it."""
        backup = step.args["backup"]
        lines = self._printed.get(step.id, [])
        found = SHA256_LINE.match(lines[-1].strip()) if lines else None
        self.record.emit(
            ev.BackupTaken,
            step=step.id,
            node=step.node,
            service=step.service,
            file=found.group(2) if found else "",
            sha256=found.group(1) if found else "",
            source=str(backup.get("source", "")),
            databases=tuple(backup.get("databases", ())),
            where=str(backup.get("where", "")) or ("" if found else "not said by the step"),
        )

    def _pulled(self, step: Step, receiver: BackupReceiver) -> None:
        assert receiver.remote is not None and receiver.expected is not None
        self.record.emit(
            ev.BackupPulled,
            step=step.id,
            node=step.node,
            remote=receiver.remote,
            local=str(receiver.local),
            size=receiver.size,
            sha256=receiver.expected,
        )
        self.record.collector(step.id)(
            "info",
            f"copied {receiver.remote} to {receiver.local} ({receiver.size} bytes, "
            f"sha256 {receiver.expected})",
        )

    def timeout(self, step: Step) -> tuple[float, str]:
        return step_limit(self.plan.policy, step.action)

    async def _call(
        self,
        step: Step,
        node: Node,
        collect: Callable[[str, str], None],
        timeout: float,
        job: str,
    ) -> CommandResult:
        stop = self.intake.stop_signal
        if step.executor == "cloud":
            return await self.executor.cloud(
                self.sites[step.site],
                step.action,
                step.args,
                on_output=collect,
                timeout=timeout,
                stop=stop,
            )
        assert step.command is not None
        # the only copy with the secrets' values in it
        command = self.options.secrets.fill(runtime(step.command, self.options.run_id) or "")
        return await self.executor.run(
            node,
            command,
            on_output=collect,
            timeout=timeout,
            local=step.executor == "local",
            job=job or None,
            stop=stop,
        )

    # ---------------------------------------------------------------- jobs on the nodes

    def jobs_dir(self) -> str:
        return run_dir(self.options.job_root, self.options.run_id)

    def job(self, step: Step, attempt: int) -> str:
        """The job directory of one attempt of a step on its node: the same attempt always
        names the same job, so running it again re-attaches, never starts a second copy."""
        return f"{self.jobs_dir()}/{job_name(step.id, attempt)}"

    async def follow_interrupted(self, step: Step, attempt: int) -> str:
        """Re-attach to a step a previous driver left running: follow its job to the end and
        record how it ended. Returns "" when settled, else why the node cannot tell."""
        follow: Any = getattr(self.executor, "follow", None)
        if step.executor != "ssh" or follow is None or not attempt:
            return "Rollgate cannot ask the node how it ended"
        self.record.emit(
            ev.StepOutput,
            step=step.id,
            stream="info",
            lines=(f"re-attaching to attempt {attempt} on {step.node}",),
        )
        timeout = float(self.plan.policy.get("step_timeout", 1800))
        try:
            result = await follow(
                self.nodes[step.node],
                self.job(step, attempt),
                on_output=self.record.collector(step.id),
                timeout=timeout,
                stop=self.intake.stop_signal,
            )
        except TransportError as exc:
            return f"the node could not be asked ({exc})"
        self.record.flush_output(step.id)
        if result is not None and result.left_running:  # the driver leaves again
            self.left_running = True
            raise Halted
        if result is None:
            return "the node has no record of it (restarted, or its job directory is gone)"
        if result.exit_status is None:
            self.unstoppable = self.unstoppable or result.terminated is not True
            if self.intake.stop:
                raise Halted
            return f"following it ended without an exit status ({result.error})"
        outcome = step.exit_codes.get(result.exit_status, "failed")
        if outcome == "repeat":
            return f"it finished with more to do (exit {result.exit_status})"
        self.record.emit(
            ev.StepFinished,
            step=step.id,
            attempt=attempt,
            outcome="ok" if outcome == "warning" else outcome,
            exit_status=result.exit_status,
            error="" if outcome in ("ok", "warning") else f"exit status {result.exit_status}",
        )
        return ""

    async def clean_jobs(self) -> None:
        """Remove the run's job directories from the nodes once no job can be running
        (a job that could not be stopped keeps its directory, for the operator to look at)."""
        clean: Any = getattr(self.executor, "clean_jobs", None)
        if clean is None or self.options.keep_jobs or self.unstoppable or self.left_running:
            return
        try:
            await clean(self.jobs_dir())
        except Exception as exc:  # cleaning is a courtesy: say so, never fail the run for it
            self.record.emit(
                ev.OperatorNote, operator="rollgate", text=f"job directories not removed: {exc}"
            )


SHA256_LINE = re.compile(r"^([0-9a-f]{64}) [ *](\S+)$")  # sha256sum's "HASH  FILE"


def step_limit(policy: dict[str, Any], action: str) -> tuple[float, str]:
    """Seconds a step of `action` may take, and the policy setting that says so: a wait for a
    restarted service's heartbeat has its own, shorter, limit; a network-bound build of the
    preparation its own, longer, one."""
    timeout = float(policy.get("step_timeout", 1800))
    if action in BUILD_ACTIONS:  # a plan made before build_timeout: an hour
        return float(policy.get("build_timeout", 3600)), "policy.build_timeout"
    if action in HEARTBEAT_WAITS and "heartbeat_timeout" in policy:
        heartbeat = float(policy["heartbeat_timeout"])
        if heartbeat < timeout:
            return heartbeat, "policy.heartbeat_timeout"
    return timeout, "policy.step_timeout"
