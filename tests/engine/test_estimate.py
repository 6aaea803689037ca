"""The estimate of the work left: this run's pace without the time spent at gates, refined
by past runs of the same cloud; a phase gate says when it runs past the window's end."""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

import pytest

from rollgate.core import events as ev
from rollgate.core.estimate import pace, past_pace, remaining_seconds
from rollgate.core.journal import read_journal
from rollgate.core.plan import Plan
from rollgate.core.state import GateState, RunState, apply, fold
from rollgate.core.window import Window
from tests.engine.conftest import drive, make
from tests.sample_run import SHIPPED


def _state_with(seconds_per_step: float, steps_done: int, gate_wait: float) -> RunState:
    journal = read_journal(SHIPPED)
    plan = Plan.from_dict(journal.header["plan"])
    state = RunState.initial(plan)
    for seq, step in enumerate(list(plan.steps)[:steps_done]):  # through the reducer
        stamp = {"time": 1000.0, "mono": 0.0}
        apply(state, ev.StepStarted(seq=2 * seq + 1, step=step.id, node=step.node, attempt=1,
                                    **stamp))  # fmt: skip
        apply(state, ev.StepFinished(seq=2 * seq + 2, step=step.id, attempt=1, outcome="ok",
                                     **stamp))  # fmt: skip
    state.started = 1000.0
    state.gates = []
    if gate_wait:
        state.gates.append(GateState("g", "phase", "t", "", (), None, 1000.0, "approve", "a",
                                     "", 1000.0 + gate_wait))  # fmt: skip
    state.finished = 1000.0 + seconds_per_step * steps_done + gate_wait
    return state


def test_the_pace_leaves_out_the_time_an_operator_took_at_a_gate() -> None:
    state = _state_with(2.0, 50, gate_wait=600)
    found = pace(state, state.finished or 0)
    assert found == (2.0, 50)
    left = len(state.steps) - 50
    assert remaining_seconds(state, state.finished or 0) == pytest.approx(left * 2.0)


def test_past_runs_lead_early_and_this_run_leads_later() -> None:
    early = _state_with(2.0, 2, gate_wait=0)
    late = _state_with(2.0, 400, gate_wait=0)
    rate_early = (remaining_seconds(early, early.finished or 0, past=10.0) or 0) / (
        len(early.steps) - 2
    )
    rate_late = (remaining_seconds(late, late.finished or 0, past=10.0) or 0) / (
        len(late.steps) - 400
    )
    assert rate_early > 8.0  # mostly the past runs' 10 s a step
    assert 2.0 < rate_late < 2.6  # mostly this run's 2 s a step
    nothing = RunState.initial(early.plan)
    assert remaining_seconds(nothing, 0.0) is None  # nothing to measure: no figure
    assert remaining_seconds(nothing, 0.0, past=3.0) == pytest.approx(3.0 * len(nothing.steps))


def test_past_pace_reads_the_clouds_complete_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROLLGATE_STATE_DIR", str(tmp_path))
    assert past_pace("lab-two-sites") is None
    run = tmp_path / "runs" / "sample"
    run.mkdir(parents=True)
    shutil.copy(SHIPPED, run / "journal.jsonl")
    journal = read_journal(SHIPPED)
    state = fold(Plan.from_dict(journal.header["plan"]), journal.events)
    expected = pace(state, journal.events[-1].time)
    assert expected is not None and expected[0] > 1.0  # the sample's steps take time
    assert past_pace("lab-two-sites") == pytest.approx(expected[0])
    assert past_pace("lab-two-sites", exclude="sample") is None
    assert past_pace("another-cloud") is None


async def test_a_phase_gate_says_when_the_estimate_passes_the_windows_end() -> None:
    h = await make(auto_approve=True)
    now = time.time()
    h.engine.options = dataclasses.replace(
        h.engine.options, window=Window(now - 60, now + 3600, relative=False), past_pace=1000.0
    )
    await drive(h, lambda gate: None)
    first = next(e for e in h.engine.history if isinstance(e, ev.GateOpened))
    assert "ESTIMATE: about " in first.summary
    assert "past the window's end: reject stops here, between phases" in first.summary
    h2 = await make(auto_approve=True)
    h2.engine.options = dataclasses.replace(
        h2.engine.options, window=Window(now - 60, now + 3600, relative=False), past_pace=0.01
    )
    await drive(h2, lambda gate: None)
    assert not any(
        "ESTIMATE" in e.summary for e in h2.engine.history if isinstance(e, ev.GateOpened)
    )
