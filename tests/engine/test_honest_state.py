"""Every state word is earned: nodes, phases, runs and the report say what the cloud did."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from rollgate.core import events as ev
from rollgate.core.client import open_journal_client
from rollgate.core.report import build_report, to_markdown
from rollgate.core.state import RunState, apply
from rollgate.core.words import WORDS
from tests.engine.conftest import drive, make
from tests.sample_run import SHIPPED


def skip(reason: str):  # type: ignore[no-untyped-def]
    def decide(gate: ev.GateOpened) -> ev.Command | None:
        if gate.kind == "failure":
            return ev.Command("skip", "ursula", reason, gate.gate)
        return None

    return decide


async def test_an_unreachable_node_that_was_skipped_is_never_done(tmp_path: Path) -> None:
    h = await make(tmp_path, faults=["unreachable:one-cmp3"], auto_approve=True)
    try:
        outcome = await drive(h, skip("hypervisor is down, replace it next week"))
    finally:
        await h.lab.close()
    assert outcome == "complete with deviations"
    node = h.engine.state.nodes["one-cmp3"]
    assert node.status == "unreachable"
    assert node.disabled is True  # fenced before the upgrade, never re-enabled
    compute = next(p for p in h.plan.phases if p.id == "one/compute")
    assert h.engine.state.phases[compute.id] == "ok with deviations"
    h.engine.journal.close()  # type: ignore[union-attr]
    client = open_journal_client(str(tmp_path / "journal.jsonl"))
    report = build_report(client.plan, client.header, client.all_events())
    assert report["outcome"] == "complete with deviations"
    assert [n["node"] for n in report["not_upgraded"]] == ["one-cmp3"]
    missing = report["not_upgraded"][0]
    assert missing["state"] == "unreachable" and missing["fenced"]
    assert any("enable nova-compute on one-cmp3" in s for s in missing["skipped_steps"])
    text = to_markdown(report).splitlines()
    top = "\n".join(text[:8])  # the first lines name the node, its state and the fence
    assert "**complete with deviations**" in top
    assert "**one-cmp3** (one): unreachable, left disabled in the scheduler" in top


async def test_skipping_a_compute_step_skips_the_rest_of_that_node_and_says_so() -> None:
    h = await make(
        faults=["fail:one-cmp4:systemctl restart nova-compute"],
        policy={"failure_budget": 0},
    )
    try:
        assert await drive(h, skip("kernel panic on restart; RMA")) == "complete with deviations"
    finally:
        await h.lab.close()
    steps = [s for s in h.plan.steps if s.node == "one-cmp4" and "/compute/" in s.id]
    statuses = {s.action: h.engine.state.steps[s.id].status for s in steps}
    assert statuses["disable-compute"] == "ok"
    assert statuses["enable-compute"] == "skipped" and statuses["wait-compute-up"] == "skipped"
    node = h.engine.state.nodes["one-cmp4"]
    assert (node.status, node.disabled) == ("skipped", True)
    # every other compute was upgraded and ends done
    others = [n for n in h.engine.state.nodes.values() if n.name.startswith("one-cmp")]
    assert {n.name for n in others if n.status == "done"} == {
        "one-cmp1",
        "one-cmp2",
        "one-cmp3",
        "one-cmp5",
    }


def test_a_node_is_working_only_while_a_step_of_it_runs() -> None:
    client = open_journal_client(str(SHIPPED))
    state = RunState.initial(client.plan)
    for event in client.all_events():
        apply(state, event)
        for node in state.nodes.values():
            assert (node.status == "working") == (node.running > 0), (event.seq, node.name)
            assert node.status in WORDS["node"]
    assert state.nodes["east-cmp04"].status == "done"  # failed once, retried, upgraded


async def test_a_failed_canary_opens_a_failure_gate_and_batches_never_start_unasked() -> None:
    # canary one-cmp1 fails; --auto-approve answers approval gates, never this one
    h = await make(faults=["fail:one-cmp1:systemctl restart nova-compute"], auto_approve=True)
    gates: list[ev.GateOpened] = []

    def decide(gate: ev.GateOpened) -> ev.Command | None:
        gates.append(gate)
        if gate.kind == "failure":
            return ev.Command("skip", "vic", "canary host is flaky", gate.gate)
        if "NOT upgraded" in gate.title:
            return ev.Command("reject", "vic", "stop: look at the canary first", gate.gate)
        return None

    try:
        assert await drive(h, decide) == "stopped"
    finally:
        await h.lab.close()
    failure = next(g for g in gates if g.kind == "failure")
    assert "the canary failed" in failure.title and "budget" not in failure.title
    verdict = next(g for g in gates if "NOT upgraded" in g.title)
    assert "one-cmp1" in verdict.title
    decided = next(e for e in h.events(ev.GateDecided) if e.gate == verdict.gate)
    assert decided.operator == "vic"  # not auto-approve
    assert not any(g.title.startswith("canary one-cmp1 is upgraded") for g in gates)
    batches = [s.id for s in h.plan.steps if "/one/compute/batch-" in f"/{s.id}"]
    started = {e.step for e in h.events(ev.StepStarted)}
    assert batches and not started & set(batches)


async def test_no_step_starts_in_a_phase_while_its_failure_budget_gate_is_open() -> None:
    h = await make(
        faults=[
            "fail:one-cmp2:systemctl restart nova-compute",
            "fail:one-cmp3:systemctl restart nova-compute",
        ],
        policy={"failure_budget": 0, "batch_size": 4},
    )

    async def decide(gate: ev.GateOpened) -> ev.Command | None:
        if gate.kind == "failure":
            await asyncio.sleep(0.2)  # an operator reads the gate; the others must wait
            return ev.Command("skip", "wes", "replace the hypervisor", gate.gate)
        return None

    try:
        assert await drive(h, decide) == "complete with deviations"
    finally:
        await h.lab.close()
    history = h.engine.history
    open_gates: set[str] = set()
    for event in history:
        if isinstance(event, ev.GateOpened) and "budget" in event.title:
            open_gates.add(event.gate)
        elif isinstance(event, ev.GateDecided):
            open_gates.discard(event.gate)
        elif isinstance(event, ev.StepStarted) and open_gates:
            assert not event.step.startswith("one/compute/"), (
                f"{event.step} started while {open_gates} was open"
            )
    assert sum("budget" in e.title for e in h.events(ev.GateOpened)) == 2


async def test_a_rejected_gate_at_one_site_ends_every_branch_before_run_finished() -> None:
    # two sites run at once (site_concurrency 2); rejecting the second site's phase gate
    # while the first site's phase runs must not leave events behind RunFinished
    h = await make(auto_approve=False)
    h.lab.world.time_scale = 0.002

    def decide(gate: ev.GateOpened) -> ev.Command | None:
        if gate.gate == "gate:two/image":
            return ev.Command("reject", "xena", "site two has an incident", gate.gate)
        return None

    try:
        assert await drive(h, decide) == "stopped"
    finally:
        await h.lab.close()
    history = h.engine.history
    assert isinstance(history[-1], ev.RunFinished)
    assert sum(isinstance(e, ev.RunFinished) for e in history) == 1
    started = {e.step for e in h.events(ev.StepStarted)}
    finished = {e.step for e in h.events(ev.StepFinished)}
    assert started == finished  # running steps were let finish, none left running
    assert h.engine.state.phases["two/image"] == "stopped"


class BrokenExecutorError(RuntimeError):
    pass


async def test_an_engine_error_is_journalled_and_ends_every_watcher(tmp_path: Path) -> None:
    h = await make(tmp_path)
    real_cloud = h.engine.executor.cloud

    async def cloud(site, action, args, **kw):  # type: ignore[no-untyped-def]
        if action == "disable-compute":  # a bug in our own code path, not a failed step
            raise BrokenExecutorError("cannot render the request")
        return await real_cloud(site, action, args, **kw)

    h.engine.executor.cloud = cloud  # type: ignore[method-assign]
    seen: list[ev.Event] = []

    async def watch() -> None:
        async for event in h.client.events(1):
            seen.append(event)

    watcher = asyncio.create_task(watch())
    try:
        assert await drive(h, lambda gate: None) == "failed"
        await asyncio.wait_for(watcher, 5)  # the watcher's stream ended with the run
    finally:
        await h.lab.close()
    last = h.engine.history[-1]
    assert isinstance(last, ev.RunFinished) and seen[-1] is last
    assert last.error == "engine error: BrokenExecutorError: cannot render the request"
    h.engine.journal.close()  # type: ignore[union-attr]
    client = open_journal_client(str(tmp_path / "journal.jsonl"))
    report = build_report(client.plan, client.header, client.all_events())
    assert report["outcome"] == "failed" and "cannot render the request" in report["error"]


async def test_resume_asks_an_open_failure_gate_again_and_never_reruns_the_step(
    tmp_path: Path,
) -> None:
    # the first driver stops with a control-plane failure gate open, undecided
    first = await make(tmp_path, faults=["fail:one-ctl1:glance-manage db sync:1:1"])

    def leave(gate: ev.GateOpened) -> ev.Command | None:
        if gate.kind == "failure":
            first.engine.leave_paused("tester", "driver lost")
        return None

    try:
        assert await drive(first, leave) == "paused"
    finally:
        await first.lab.close()
    first.engine.journal.close()  # type: ignore[union-attr]
    failed = next(e for e in first.events(ev.StepFinished) if e.outcome == "failed")
    gate = next(e for e in first.events(ev.GateOpened) if e.kind == "failure")
    history = open_journal_client(str(tmp_path / "journal.jsonl")).all_events()

    second = await make(tmp_path, history=history)
    asked: list[ev.GateOpened] = []
    runs_before_gate: list[str] = []

    def decide(g: ev.GateOpened) -> ev.Command | None:
        if g.kind == "failure":
            asked.append(g)
            runs_before_gate.extend(
                e.step
                for e in second.engine.history[len(history) :]
                if isinstance(e, ev.StepStarted)
            )
            return ev.Command("retry", "tester", "", g.gate)
        return None

    try:
        assert await drive(second, decide) == "complete"
    finally:
        await second.lab.close()
    assert asked[0].gate == gate.gate  # the same gate, asked again
    assert failed.step not in runs_before_gate  # not re-run by itself before the decision


async def test_resume_restores_the_failure_budget_already_spent(tmp_path: Path) -> None:
    # budget 1, spent by one-cmp2 before the driver stopped; after resume the next failure
    # (one-cmp4) is over budget and asks at once
    faults = [
        "fail:one-cmp2:systemctl restart nova-compute",
        "fail:one-cmp4:systemctl restart nova-compute",
    ]
    first = await make(tmp_path, faults=faults, policy={"batch_size": 1})

    async def stop_after_first_failure() -> None:
        while not any(e.outcome == "failed" for e in first.events(ev.StepFinished)):
            await asyncio.sleep(0.001)
        first.engine.leave_paused("tester", "driver lost")

    stopper = asyncio.create_task(stop_after_first_failure())
    try:
        assert await drive(first, lambda g: None) == "paused"
    finally:
        stopper.cancel()
        await first.lab.close()
    first.engine.journal.close()  # type: ignore[union-attr]
    history = open_journal_client(str(tmp_path / "journal.jsonl")).all_events()
    second = await make(tmp_path, faults=faults[1:], history=history, policy={"batch_size": 1})
    titles: list[str] = []

    def decide(g: ev.GateOpened) -> ev.Command | None:
        if g.kind == "failure":
            titles.append(g.title)
            return ev.Command("skip", "tester", "broken hardware", g.gate)
        return None

    try:
        assert await drive(second, decide) == "complete with deviations"
    finally:
        await second.lab.close()
    assert "budget spent" in titles[0] and "one-cmp4" in titles[0]
    assert "2 failed nodes (budget 1)" in titles[0]


async def a_complete_run(tmp_path: Path, policy: dict[str, Any] | None = None) -> list[ev.Event]:
    """A whole run of the small cloud, journalled in tmp_path (its lab kept there); its events."""
    first = await make(tmp_path, policy=policy)
    try:
        assert await drive(first, lambda g: None) == "complete"
    finally:
        await first.lab.close()
    first.engine.journal.close()  # type: ignore[union-attr]
    return open_journal_client(str(tmp_path / "journal.jsonl")).all_events()


async def test_after_a_crash_gate_summaries_count_no_failure_that_did_not_happen(
    tmp_path: Path,
) -> None:
    events = await a_complete_run(tmp_path)
    # the driver died right after starting a step (SIGKILL): the journal ends there
    cut = next(i for i, e in enumerate(events) if isinstance(e, ev.StepStarted))
    history = events[: cut + 1]
    second = await make(history=history, auto_approve=False)  # a fresh lab: nothing ran yet
    summaries: list[str] = []

    def decide(g: ev.GateOpened) -> ev.Command | None:
        if g.seq > len(history):  # asked by this driver, not read back from the journal
            summaries.append(g.summary)
        return ev.Command("rerun", "tester", "", g.gate) if g.kind == "interrupted" else None

    try:
        assert await drive(second, decide) == "complete"
    finally:
        await second.lab.close()
    assert "1 interrupted, 0 failed" in summaries[0]
    assert all("0 failed" in s for s in summaries if s.startswith("done so far"))


async def test_a_compute_an_operator_disabled_before_the_run_stays_disabled() -> None:
    h = await make()
    record = h.lab.world.record("one", "one-cmp3", "nova-compute")
    assert record is not None
    record.disabled_reason = "RMA ticket 42: failing DIMM"
    try:
        assert await drive(h, lambda g: None) == "complete"
    finally:
        await h.lab.close()
    assert record.disabled_reason == "RMA ticket 42: failing DIMM"  # kept, reason and all
    assert h.engine.state.nodes["one-cmp3"].disabled is True
    others = [h.lab.world.record("one", f"one-cmp{i}", "nova-compute") for i in (1, 2, 4, 5)]
    assert all(r is not None and r.disabled_reason is None for r in others)
    said = [
        line
        for e in h.events(ev.StepOutput)
        if "one-cmp3" in e.step and "enable-compute" in e.step
        for line in e.lines
    ]
    assert said == [
        "nova-compute on one-cmp3 left disabled, as the run found it (RMA ticket 42: failing DIMM)"
    ]


async def test_a_step_interrupted_after_the_data_plane_is_run_again_not_called_failed(
    tmp_path: Path,
) -> None:
    """The driver died while a compute phase's post step ran (another site's failure gate had
    its attention): the resumed run asks about that step, and re-runs it; no gate says its
    node failed (one did, claiming "1 node(s) failed" for a step chosen to run again)."""
    one_site_at_a_time = {"site_concurrency": 1}  # only that step runs when the kill lands
    events = await a_complete_run(tmp_path, one_site_at_a_time)
    post = next(  # the first step after a compute phase's batches: it runs when the kill lands
        i
        for i, e in enumerate(events)
        if isinstance(e, ev.StepStarted) and "/compute/allow-restarts/" in e.step
    )
    history = events[: post + 1]
    # the lab as the first run left it (upgraded): what follows the cut runs on it again
    second = await make(tmp_path, history=history, auto_approve=False, policy=one_site_at_a_time)
    asked: list[ev.GateOpened] = []

    def decide(g: ev.GateOpened) -> ev.Command | None:
        if g.seq > len(history):
            asked.append(g)
        if g.kind == "failure":  # nothing failed: a failure gate is the bug
            return ev.Command("abort", "tester", "", g.gate)
        return ev.Command("rerun", "tester", "", g.gate) if g.kind == "interrupted" else None

    try:
        outcome = await drive(second, decide)
    finally:
        await second.lab.close()
    assert outcome == "complete", [g.title for g in asked]
    interrupted = events[post].step  # type: ignore[attr-defined]
    assert [g.kind for g in asked if g.kind in ("interrupted", "failure")] == ["interrupted"]
    runs = [e for e in second.events(ev.StepFinished) if e.step == interrupted]
    assert [e.outcome for e in runs][-1] == "ok"  # run again, to the end
