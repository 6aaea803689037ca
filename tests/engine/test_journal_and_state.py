"""The journal on disk (mode, header, torn lines, corruption, lock) and reducer properties."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rollgate.core import events as ev
from rollgate.core.errors import UserError
from rollgate.core.inventory import load_inventory
from rollgate.core.journal import (
    JournalError,
    JournalTail,
    JournalWriteError,
    JournalWriter,
    read_journal,
    seal,
)
from rollgate.core.journal_index import JournalIndex
from rollgate.core.plan import build_plan
from rollgate.core.runs import RunLock
from rollgate.core.state import RunState, apply, reduce

SMALL = Path(__file__).with_name("small.yaml")
PLAN = build_plan(load_inventory(SMALL))
STEPS = [s.id for s in PLAN.steps]


def write_some(path: Path) -> list[ev.Event]:
    writer = JournalWriter(path, {"run_id": "r"})
    events = [
        ev.RunStarted(seq=1, run_id="r", operator="o", plan_digest="d"),
        ev.StepStarted(seq=2, step=STEPS[0], node="key1", attempt=1),
        ev.StepOutput(seq=3, step=STEPS[0], stream="stdout", lines=("a", "b")),
        ev.StepFinished(seq=4, step=STEPS[0], attempt=1, outcome="ok", exit_status=0),
    ]
    for e in events:
        writer.write(e)
    writer.close()
    return events


def test_journal_is_private_and_starts_with_a_header(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    events = write_some(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    header = json.loads(path.read_text().splitlines()[0])
    assert header["format"] == "rollgate.journal/2" and header["run_id"] == "r"
    contents = read_journal(path)
    assert contents.events == events and not contents.torn


def test_a_torn_last_line_is_skipped_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    events = write_some(path)
    with open(path, "a") as f:
        f.write('{"type":"step-started","seq":5,"ti')
    contents = read_journal(path)
    assert contents.torn and contents.events == events
    JournalWriter(path, None).close()  # reopening for resume closes the fragment
    assert read_journal(path).events == events


def journal_with_line_3_corrupt(tmp_path: Path) -> Path:
    path = tmp_path / "j.jsonl"
    write_some(path)
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = "this is not json\n"
    path.write_text("".join(lines))
    return path


def read_lazily(path: Path) -> list[ev.Event]:
    index = JournalIndex.open(path)
    return index.events(0, len(index))


@pytest.mark.parametrize("reader", [read_journal, read_lazily], ids=["whole", "lazy"])
def test_a_corrupt_middle_line_is_an_error_naming_the_line(tmp_path: Path, reader) -> None:
    path = journal_with_line_3_corrupt(tmp_path)
    with pytest.raises(JournalError, match=r"j.jsonl:3: damaged record in run r \(it does not "
                       r"match its integrity check\)"):  # fmt: skip
        reader(path)
    copy = read_journal(tmp_path / "j.jsonl.recovered")  # the whole part before it
    assert [e.seq for e in copy.events] == [1]


def open_lazily(path: Path) -> tuple[list[ev.Event], bool]:
    index = JournalIndex.open(path)
    return index.events(0, len(index)), index.torn


def test_the_lazy_reader_skips_torn_fragments_like_the_whole_reader(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    events = write_some(path)
    with open(path, "a") as f:
        f.write('{"type":"step-started","seq":5,"ti')
    assert open_lazily(path) == (events, True)
    JournalWriter(path, None).close()  # a resume closes the fragment, then appends
    writer = JournalWriter(path, None)
    later = ev.StepStarted(seq=5, step=STEPS[1], node="key1", attempt=1)
    writer.write(later)
    writer.close()
    assert open_lazily(path) == ([*events, later], True)  # the fragment is now mid-file


async def test_lanes_committing_together_share_fsyncs_and_are_durable_on_return(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "j.jsonl"
    writer = JournalWriter(path, {"run_id": "r"})
    syncs = 0
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        nonlocal syncs
        syncs += 1
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)

    async def lane(i: int) -> None:
        writer.append(ev.StepStarted(seq=i + 1, step=STEPS[i % len(STEPS)], node="n", attempt=1))
        await writer.commit()
        # on return this lane's event is in the file (the engine acts only now)
        assert f'"seq":{i + 1},'.encode() in path.read_bytes()

    await asyncio.gather(*(lane(i) for i in range(100)))
    writer.close()
    assert len(read_journal(path).events) == 100
    assert syncs < 10, f"{syncs} fsyncs for 100 lanes that committed together"


async def test_a_lane_cancelled_while_committing_leaves_the_others_waiting_for_their_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An abort cancels one branch mid-commit; the rest still return only once on disk."""
    path = tmp_path / "j.jsonl"
    writer = JournalWriter(path, {"run_id": "r"})
    release = threading.Event()
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        release.wait(10)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    done: list[int] = []

    async def lane(i: int) -> None:
        writer.append(ev.StepStarted(seq=i + 1, step=STEPS[i % len(STEPS)], node="n", attempt=1))
        await writer.commit()
        done.append(i)

    lanes = [asyncio.ensure_future(lane(i)) for i in range(3)]
    await asyncio.sleep(0.05)  # all three wait on the one fsync
    lanes[0].cancel()
    await asyncio.sleep(0.05)
    assert lanes[0].cancelled() and done == []  # the others still wait for the disk
    release.set()
    await asyncio.gather(*lanes[1:])
    assert sorted(done) == [1, 2]
    writer.close()


async def test_a_failed_fsync_reaches_every_lane_waiting_on_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "j.jsonl"
    writer = JournalWriter(path, {"run_id": "r"})

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)

    async def lane(i: int) -> None:
        writer.append(ev.StepStarted(seq=i + 1, step=STEPS[i % len(STEPS)], node="n", attempt=1))
        await writer.commit()

    outcomes = await asyncio.gather(*(lane(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(o, JournalWriteError) for o in outcomes), outcomes
    assert "Input/output error" in str(outcomes[0])


def test_not_a_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"hello": 1}\n')
    with pytest.raises(JournalError, match=r"not a rollgate\.journal/2 journal"):
        read_journal(path)


def test_second_driver_is_refused_naming_the_holder_and_the_way_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROLLGATE_STATE_DIR", str(tmp_path / "state"))
    lock_path = tmp_path / "cloud.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys,time; from pathlib import Path; from rollgate.core.runs import RunLock;"
            f"lock = RunLock(Path({str(lock_path)!r}), 'cloud x'); lock.acquire();"
            "print('held', flush=True); sys.stdin.readline(); lock.describe('r1');"
            "print('named', flush=True); time.sleep(30)",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(  # no run yet: where it runs, and where to look
            UserError,
            match=rf"cloud x is already being driven: pid {holder.pid} on .* since .*; "
            r"`rollgate runs` lists its run",
        ):
            RunLock(lock_path, "cloud x").acquire()
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "named"
        with pytest.raises(  # a console in the foreground: watch it, or quit it
            UserError,
            match=r"run r1, driven by a console in the foreground .*`rollgate watch r1`",
        ):
            RunLock(lock_path, "cloud x").acquire()
        sock = tmp_path / "state" / "runs" / "r1" / "control.sock"
        sock.parent.mkdir(parents=True)
        sock.touch()
        with pytest.raises(UserError, match=r"run r1, a detached engine .*`rollgate attach r1`"):
            RunLock(lock_path, "cloud x").acquire()
    finally:
        holder.kill()
        holder.wait()
    lock = RunLock(lock_path, "cloud x")  # the OS released it with the process
    lock.acquire()
    lock.release()


step_events = st.lists(
    st.tuples(
        st.sampled_from(["start", "finish"]),
        st.sampled_from(STEPS[:6]),
        st.sampled_from(["ok", "failed", "skipped", "timed_out", "warning"]),
    ),
    max_size=60,
)


@settings(max_examples=100, deadline=None)
@given(step_events)
def test_reducer_counts_stay_consistent(sequence: list[tuple[str, str, str]]) -> None:
    state = RunState.initial(PLAN)
    for seq, (kind, step, outcome) in enumerate(sequence, start=1):
        node = PLAN.step(step).node
        event: ev.Event = (
            ev.StepStarted(seq=seq, step=step, node=node, attempt=seq)
            if kind == "start"
            else ev.StepFinished(seq=seq, step=step, attempt=seq, outcome=outcome)
        )
        apply(state, event)
        for n in state.nodes.values():
            assert n.running >= 0 and n.failed >= 0 and 0 <= n.steps_done <= n.steps_total
            mine = [s for s in state.steps.values() if s.node == n.name]
            assert n.running == sum(s.status == "running" for s in mine)
            assert n.steps_done == sum(s.done for s in mine)
        assert sum(state.counts().values()) == len(state.nodes)
        by_status: dict[str, int] = {}
        for n in state.nodes.values():
            by_status[n.status] = by_status.get(n.status, 0) + 1
        assert state.counts() == by_status  # the running counts are a recount's
        assert state.settled_count == sum(s.done for s in state.steps.values())


def test_reduce_is_pure() -> None:
    state = RunState.initial(PLAN)
    after = reduce(state, ev.StepStarted(seq=1, step=STEPS[0], node="key1", attempt=1))
    assert state.steps[STEPS[0]].status == "pending"
    assert after.steps[STEPS[0]].status == "running"


def test_a_follower_reads_only_new_lines_and_waits_for_a_partial_one(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    events = write_some(path)
    index = JournalIndex.open(path)
    tail = JournalTail(path, index.consumed, index.lines_consumed, index.reader)
    assert tail.read_new() == []
    later = ev.StepStarted(seq=5, step=STEPS[1], node="key1", attempt=1)
    line = seal(later.to_json_bytes()).decode() + "\n"  # as the driving engine writes it
    with open(path, "a") as f:
        f.write(line[:20])  # the driving console is mid-write
        f.flush()
        assert tail.read_new() == []
        f.write(line[20:])
    assert tail.read_new() == [ev.StepStarted(seq=5, step=STEPS[1], node="key1", attempt=1)]
    assert len(index) == len(events)


def test_a_new_journal_appears_with_its_header_whole(tmp_path: Path) -> None:
    """Written beside it and linked into place: a reader (watch, a resume, a test polling the
    file) never finds the journal empty or with half its header line (a plan is ~300 KB)."""
    path = tmp_path / "journal.jsonl"
    with pytest.raises(ValueError, match="needs a header"):
        JournalWriter(path, None)  # a resume of a journal that is not there
    assert not path.exists()
    writer = JournalWriter(path, {"run_id": "r", "plan": {"big": "x" * 300_000}})
    assert read_journal(path).header["run_id"] == "r"  # whole, before any event
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal.jsonl"]  # nothing beside
    assert (path.stat().st_mode & 0o777) == 0o600
    writer.write(ev.RunStarted(seq=1, run_id="r", operator="o", plan_digest="d"))
    writer.close()
    assert len(read_journal(path).events) == 1
