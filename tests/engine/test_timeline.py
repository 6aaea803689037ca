"""Seeking a journal gives exactly the state of folding its first k events."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rollgate.core import events as ev
from rollgate.core.client import open_journal_client
from rollgate.core.journal_index import JournalIndex
from rollgate.core.state import fold
from rollgate.core.timeline import Timeline
from tests.sample_run import SHIPPED

CLIENT = open_journal_client(str(SHIPPED))
EVENTS = CLIENT.all_events()
TIMELINE = Timeline(CLIENT.plan, EVENTS, checkpoint_every=97)


def snapshot(state) -> tuple:
    return (
        state.status,
        state.last_seq,
        {k: vars(v).copy() for k, v in state.steps.items()},  # every field of every step
        {k: vars(v).copy() for k, v in state.nodes.items()},
        [(g.id, g.decision, g.operator, g.comment) for g in state.gates],
        dict(state.phases),
        dict(state.stages),
        state.step_counts(),
        state.counts(),
        state.gate.id if state.gate else None,
        list(state.notes),
        (state.started, state.finished, state.pauses),
    )


@settings(max_examples=40, deadline=None)
@given(st.integers(0, len(EVENTS)))
def test_state_after_seeking_to_k_equals_folding_the_first_k(k: int) -> None:
    assert snapshot(TIMELINE.state_at(k)) == snapshot(fold(CLIENT.plan, EVENTS[:k]))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, len(EVENTS)), min_size=2, max_size=8), st.integers(5, 400))
def test_any_order_of_seeks_over_the_lazy_journal_matches_folding(
    ks: list[int], every: int
) -> None:
    # The replay path: events parsed from the journal on demand, checkpoints of changes only.
    timeline = Timeline(CLIENT.plan, JournalIndex.open(SHIPPED), checkpoint_every=every)
    for k in ks:
        assert snapshot(timeline.view_at(k)) == snapshot(fold(CLIENT.plan, EVENTS[:k])), k


def test_seeking_does_not_disturb_earlier_answers() -> None:
    first = snapshot(TIMELINE.state_at(300))
    TIMELINE.state_at(len(EVENTS))
    TIMELINE.state_at(10)
    assert snapshot(TIMELINE.state_at(300)) == first


def test_jumps_to_gates_failures_and_phases_and_seek_by_time() -> None:
    k = TIMELINE.find(0, "gate")
    assert isinstance(EVENTS[k - 1], ev.GateOpened)
    failure = TIMELINE.find(0, "failure")
    assert EVENTS[failure - 1].outcome == "failed"  # type: ignore[attr-defined]
    back = TIMELINE.find(failure + 50, "failure", forward=False)
    assert back == failure or EVENTS[back - 1].outcome == "failed"  # type: ignore[attr-defined]
    phase = TIMELINE.find(0, "phase")
    assert isinstance(EVENTS[phase - 1], ev.PhaseStarted)
    middle = EVENTS[len(EVENTS) // 2]
    assert EVENTS[TIMELINE.index_at_time(middle.time) - 1].time <= middle.time
    assert TIMELINE.state_at(len(EVENTS)).status == "complete with deviations"
