"""What a run's events say in a terminal log line, and what a run's outcome means as an exit
code: shared by every view (headless, console, attach) and the detached engine."""

from __future__ import annotations

from typing import Any

from rollgate.core import events as ev
from rollgate.core.plan import Plan
from rollgate.core.words import RUN_COMPLETE, RUN_DEVIATIONS

_named: list[Any] = [None, ({}, {})]  # the last plan named, and its names


def _names(plan: Plan | None) -> tuple[dict[str, str], dict[str, str]]:
    """Step and phase ids -> what an operator reads (a step's title on its node; a phase's
    title at its site); empty without a plan. Built once per plan."""
    if plan is None:
        return {}, {}
    if _named[0] is not plan:
        steps = {
            s.id: s.title if s.node in s.title else f"{s.title} on {s.node}" for s in plan.steps
        }
        _named[:] = [plan, (steps, {p.id: f"{p.title} at {p.site}" for p in plan.phases})]
    found: tuple[dict[str, str], dict[str, str]] = _named[1]
    return found


def describe(event: ev.Event, plan: Plan | None = None) -> str | None:
    """One log line for events worth a line in a terminal log; with the plan, steps and
    phases by title, never by internal id."""
    steps, phases = _names(plan) if plan is not None and _wants_names(event) else ({}, {})
    match event:
        case ev.PhaseStarted(phase=p):
            return f"phase {phases.get(p, p)} started"
        case ev.PhaseFinished(phase=p, outcome=o):
            return f"phase {phases.get(p, p)}: {o}"
        case ev.GateOpened(title=t, kind=k):
            return f"gate ({k}): {t}"
        case ev.GateDecided(decision=d, operator=o, comment=c):
            return f"gate decided: {d} by {o}" + (f" — {c}" if c else "")
        case ev.StepFinished(step=s, outcome=o, error=e) if o not in ("ok",):
            return f"step {steps.get(s, s)}: {o}" + (f" — {e}" if e else "")
        case ev.RunPaused(operator=o, reason=r):
            return f"paused by {o}" + (f" — {r}" if r else "")
        case ev.RunResumed(operator=o):
            return f"resumed by {o}"
        case ev.RunAborted(operator=o, reason=r):
            return f"aborted by {o}" + (f" — {r}" if r else "")
        case ev.RunFinished(outcome=o, error=e):
            return f"run {o}" + (f" — {e}" if e else "")
        case ev.BackupTaken(node=n, service=sv, file=f, sha256=h, source=src) if f:
            return f"backup of {sv} ({src}) on {n}: {f} (sha256 {h[:16]}…)"
        case ev.BackupTaken(node=n, service=sv, source=src, where=w):
            return f"backup of {sv} ({src}) taken from {n}: {w}"
        case ev.BackupPulled(node=n, remote=r, local=loc, size=z, sha256=h):
            return f"backup {r} of {n} copied to {loc} ({z} bytes, sha256 {h[:16]}…)"
        case ev.NotificationFailed(channel=c, about=a, error=e):
            return f"notification ({a}) by {c} failed: {e}; the run goes on"
        case ev.StatusPollFailed(site=site, error=e):
            return f"status poll of {site} failed: {e}; node states shown may be old"
        case ev.CleanupDone(node=n, what=w, ok=True):
            return f"clean-up on {n}: {w}"
        case ev.CleanupDone(node=n, what=w, error=e):
            return f"clean-up on {n} failed ({w}): {e}"
    return None


def _wants_names(event: ev.Event) -> bool:
    return isinstance(event, ev.PhaseStarted | ev.PhaseFinished) or (
        isinstance(event, ev.StepFinished) and event.outcome != "ok"
    )


def exit_code(outcome: str) -> int:
    """0 complete, 3 complete with deviations (skipped steps: not every node was upgraded),
    1 anything else (failed, stopped, aborted, paused)."""
    return {RUN_COMPLETE: 0, RUN_DEVIATIONS: 3}.get(outcome, 1)
