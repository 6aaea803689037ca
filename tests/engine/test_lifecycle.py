"""The run's lifecycle: running -> finishing -> finished. Nothing is journalled after
RunFinished, a finished run is never resumed, every await at the end is bounded, and a
cancellation is never turned into a result."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rollgate.core import events as ev
from rollgate.core.client import CommandRejected
from rollgate.core.errors import UserError
from rollgate.core.executor import Stopped, StopSignal, TransportError, within
from rollgate.core.journal import read_journal, seal
from rollgate.core.session import RunOptions, open_session
from tests.engine.conftest import SMALL, drive, make


async def test_a_note_sent_as_the_run_finishes_is_refused_and_run_finished_stays_last(
    tmp_path: Path,
) -> None:
    h = await make(tmp_path)
    refused: list[str] = []

    async def note_at_the_end() -> None:
        seen = 0
        while True:  # the moment RunFinished is in the history, the final commit is under way
            await h.engine.wait_for_event_after(seen)
            seen = len(h.engine.history)
            if isinstance(h.engine.history[-1], ev.RunFinished):
                break
        try:
            await h.engine.send(ev.Command("note", "late", "one more thing"))
        except CommandRejected as exc:
            refused.append(str(exc))

    late = asyncio.create_task(note_at_the_end())
    try:
        assert await drive(h, lambda gate: None) == "complete"
        await late
    finally:
        await h.lab.close()
    h.engine.journal.close()  # type: ignore[union-attr]
    assert refused == ["the run has ended (complete)"]
    events = read_journal(tmp_path / "journal.jsonl").events
    assert isinstance(events[-1], ev.RunFinished) and events[-1].outcome == "complete"


async def test_only_a_note_or_abort_is_taken_while_the_run_finishes() -> None:
    h = await make()
    from rollgate.core.engine.intake import FINISHING

    h.engine.intake.lifecycle = FINISHING
    with pytest.raises(CommandRejected, match="the run is finishing"):
        await h.engine.send(ev.Command("pause", "olga"))
    await h.engine.send(ev.Command("note", "olga", "watching the clean-up"))
    await h.engine.send(ev.Command("abort", "olga", "the clean-up hangs"))
    assert h.engine.intake.stop_signal.is_set()  # running clean-up commands are told to stop
    assert not any(isinstance(e, ev.RunAborted) for e in h.engine.history)
    await h.lab.close()


async def test_a_finished_run_with_events_after_its_end_is_never_resumed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A journal written by an older Rollgate could hold a note after RunFinished: the run
    ended complete all the same, and is not resumed."""
    monkeypatch.setenv("ROLLGATE_STATE_DIR", str(tmp_path))
    journal = tmp_path / "j.jsonl"
    async with open_session(
        str(SMALL), RunOptions(journal=str(journal), lab_inprocess=True, auto_approve=True)
    ) as session:
        assert await session.engine.run() == "complete"
        last = session.engine.history[-1].seq
    with journal.open("ab") as out:  # what the old race left behind
        late = ev.OperatorNote(seq=last + 1, operator="x", text="late")
        out.write(seal(late.to_json_bytes()) + b"\n")
    with pytest.raises(UserError, match="is already complete; nothing to resume"):
        async with open_session(str(SMALL), RunOptions(resume=str(journal), lab_inprocess=True)):
            pass


async def test_a_cancel_arriving_as_the_call_completes_is_never_swallowed() -> None:
    """CPython gh-86296: Python 3.11's wait_for returns the result when the cancel and the
    result arrive in the same turn of the loop; `within` raises the cancellation. The race
    is made exactly, 200 times."""
    loop = asyncio.get_running_loop()
    for _ in range(200):
        inner: asyncio.Future[int] = loop.create_future()
        waiting = asyncio.ensure_future(within(inner, 10, None))
        await asyncio.sleep(0)  # it waits on the inner future now
        inner.set_result(1)  # the call completes...
        waiting.cancel()  # ...and the cancel arrives in the same turn
        with pytest.raises(asyncio.CancelledError):
            await waiting


async def test_within_says_which_limit_ended_a_wait() -> None:
    never = asyncio.get_running_loop().create_future()
    with pytest.raises(TimeoutError):
        await within(never, 0.01, None)
    assert never.cancelled()
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.01, stop.set)
    with pytest.raises(Stopped):
        await within(asyncio.sleep(10), None, stop)
    assert await within(asyncio.sleep(0, "done"), 1, stop) == "done"


@pytest.mark.parametrize("ended_by", ["timeout", "stop"])
async def test_a_call_that_answers_its_cancel_with_its_own_error_leaves_its_caller_whole(
    ended_by: str,
) -> None:
    """A command cancelled by its timeout or an abort may fail its own way while it stops
    (an SSH channel lost as it closes): that error is what the step reports, and the lane's
    task is left uncancelled, so its next timeout still says TimeoutError."""

    async def fails_as_it_stops() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise TransportError("n1", "the channel closed as it stopped") from None

    stop = StopSignal()
    if ended_by == "stop":
        asyncio.get_running_loop().call_later(0.01, stop.abort)
    with pytest.raises(TransportError, match="channel closed"):
        await within(fails_as_it_stops(), 0.01 if ended_by == "timeout" else None, stop)
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    with pytest.raises(TimeoutError):  # a later limit in the same task still reads as one
        await within(asyncio.sleep(10), 0.01, None)


async def test_an_abort_ends_the_engine_with_run_finished_while_a_command_hangs() -> None:
    h = await make(faults=["hang:key1:keystone-manage doctor"])

    async def abort_when_it_hangs(gate: ev.GateOpened) -> ev.Command | None:
        return None

    run = asyncio.create_task(drive(h, abort_when_it_hangs, timeout=60))
    for _ in range(500):  # the doctor check hangs on key1
        if any(s.status == "running" for s in h.engine.state.steps.values()):
            break
        await asyncio.sleep(0.01)
    await h.engine.send(ev.Command("abort", "olga", "it hangs"))
    async with asyncio.timeout(10):
        assert await run == "aborted"
    await h.lab.close()
    assert isinstance(h.engine.history[-1], ev.RunFinished)
    interrupted = [e for e in h.events(ev.StepFinished) if e.outcome == "interrupted"]
    assert interrupted and "aborted by the operator" in interrupted[0].error
