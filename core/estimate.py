"""How long the rest of a run will take: this run's measured pace (seconds of work per
settled step, time spent waiting at gates left out), refined by past runs of the same cloud."""

from __future__ import annotations

from rollgate.core.plan import Plan
from rollgate.core.state import RunState

# How many of this run's settled steps weigh as much as the past runs' pace: early on the
# past leads, after a few dozen steps this run's own pace does.
PAST_WEIGHT = 20
PAST_RUNS = 3  # the most recent complete runs of the cloud that refine the estimate


def waiting_seconds(state: RunState, now: float) -> float:
    """Time spent with a gate open (an operator deciding), which is no measure of the work."""
    total = 0.0
    for gate in state.gates:
        end = gate.decided if gate.decided is not None else now
        total += max(0.0, end - gate.opened)
    return total


def pace(state: RunState, now: float) -> tuple[float, int] | None:
    """(seconds of work per settled step, settled steps) of this run, or None before any."""
    if state.started is None:
        return None
    settled = state.settled_count
    if settled == 0:
        return None
    end = state.finished if state.finished is not None else now
    work = max(0.0, end - state.started - waiting_seconds(state, now))
    return work / settled, settled


def remaining_seconds(state: RunState, now: float, past: float | None = None) -> float | None:
    """Seconds of work left: the steps not settled at this run's pace, blended with `past`
    (seconds per step of past runs); None when there is nothing to measure yet."""
    left = len(state.steps) - state.settled_count
    if left == 0:
        return 0.0
    mine = pace(state, now)
    if mine is None and past is None:
        return None
    if mine is None:
        rate = past
    elif past is None:
        rate = mine[0]
    else:
        rate = (mine[0] * mine[1] + past * PAST_WEIGHT) / (mine[1] + PAST_WEIGHT)
    assert rate is not None
    return left * rate


def past_pace(cloud: str, exclude: str = "") -> float | None:
    """Seconds of work per step of the cloud's most recent complete runs (not dry runs), from
    their journals; None when there are none."""
    from rollgate.core.journal import JournalError, read_journal
    from rollgate.core.runs import list_runs
    from rollgate.core.state import fold

    rates: list[float] = []
    runs = [r for r in list_runs() if r.cloud == cloud and r.run_id != exclude]
    for run in reversed(runs):
        if not run.state.startswith("complete"):
            continue  # dry runs say "dry-run, ..." and are no measure either
        try:
            journal = read_journal(run.path)
        except (JournalError, OSError):
            continue
        if not journal.events:
            continue
        plan = Plan.from_dict(journal.header["plan"])
        state = fold(plan, journal.events)
        measured = pace(state, journal.events[-1].time)
        if measured is not None:
            rates.append(measured[0])
        if len(rates) == PAST_RUNS:
            break
    return sum(rates) / len(rates) if rates else None
