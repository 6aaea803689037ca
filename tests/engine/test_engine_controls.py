"""The engine on the in-process lab: gates, commands, failures, budget, concurrency, timeouts."""

from __future__ import annotations

import asyncio
from pathlib import Path

from rollgate.core import events as ev
from rollgate.core.journal import read_journal
from rollgate.core.state import fold
from tests.engine.conftest import drive, make


async def test_a_clean_run_upgrades_every_node_and_approves_every_gate() -> None:
    h = await make()
    assert await h.engine.run() == "complete"
    assert h.lab.world.all_upgraded()
    decided = h.events(ev.GateDecided)
    assert decided and all(d.operator == "auto-approve" for d in decided)
    assert "approved automatically" in decided[0].comment
    assert len(h.events(ev.GateOpened)) == len(decided)
    assert h.engine.state.counts() == {"done": len(h.inventory.nodes)}


async def test_gates_wait_for_a_decision_and_record_operator_and_comment() -> None:
    h = await make(auto_approve=False)
    seen: list[str] = []

    def decide(gate: ev.GateOpened) -> ev.Command:
        seen.append(gate.kind)
        return ev.Command("approve", "alice", f"ok {gate.kind}", gate.gate)

    assert await drive(h, decide) == "complete"
    gated = [p for p in h.plan.phases if p.tier not in ("scope", "verify")]  # reading: no gate
    assert seen.count("phase") == len(gated)
    assert seen.count("canary") == 2  # one per site with computes after the canary
    decided = h.events(ev.GateDecided)
    assert {d.operator for d in decided} == {"alice"}
    assert decided[0].comment == "ok phase"


async def test_nothing_starts_before_the_first_gate_is_approved() -> None:
    h = await make(auto_approve=False)
    run = asyncio.create_task(h.engine.run())
    await asyncio.sleep(0.05)
    assert h.engine.state.gate is not None and h.engine.state.gate.kind == "phase"
    # only the reading of each site's services against the inventory ran: nothing moved
    assert {e.step.split("/")[1] for e in h.events(ev.StepStarted)} == {"scope"}
    await h.client.send(ev.Command("abort", "tester", "changed my mind"))
    assert await run == "aborted"


async def test_rejecting_a_gate_stops_the_run_and_keeps_the_rest_pending() -> None:
    h = await make(auto_approve=False)

    def decide(gate: ev.GateOpened) -> ev.Command | None:
        if gate.gate == "gate:one/image":
            return ev.Command("reject", "bob", "glance team not ready", gate.gate)
        return None

    assert await drive(h, decide) == "stopped"
    assert h.engine.state.phases["hub/identity"] == "ok"
    assert not any(e.step.startswith("one/image") for e in h.events(ev.StepStarted))
    assert h.engine.state.status == "stopped"


async def test_pause_lets_running_steps_finish_and_starts_nothing_new() -> None:
    h = await make()
    h.lab.world.time_scale = 0.002
    run = asyncio.create_task(h.engine.run())
    while not h.events(ev.StepStarted):
        await asyncio.sleep(0.001)
    await h.client.send(ev.Command("pause", "tester"))
    await asyncio.sleep(0.3)
    started_while_paused = len(h.events(ev.StepStarted))
    assert h.engine.state.status == "paused"
    assert h.engine.state.running_steps == []  # the running step finished
    await asyncio.sleep(0.2)
    assert len(h.events(ev.StepStarted)) == started_while_paused
    await h.client.send(ev.Command("resume", "tester"))
    assert await asyncio.wait_for(run, 30) == "complete"


async def test_control_plane_failure_raises_a_gate_and_retry_reruns_the_step() -> None:
    h = await make(faults=["fail:one-ctl1:glance-manage db sync:1:1"])
    gates: list[ev.GateOpened] = []

    def decide(gate: ev.GateOpened) -> ev.Command | None:
        if gate.kind == "failure":
            gates.append(gate)
            return ev.Command("retry", "tester", "", gate.gate)
        return None

    h.engine.options.auto_approve = False
    assert await drive(h, decide) == "complete"
    assert len(gates) == 1 and "glance-manage db sync" in gates[0].title
    expand = [
        e
        for e in h.events(ev.StepFinished)
        if e.step.endswith("glance.db-sync") and e.step.startswith("one/")
    ]
    assert [e.outcome for e in expand] == ["failed", "ok"]
    assert [e.attempt for e in expand] == [1, 2]


async def test_skip_needs_a_reason_and_is_journalled(tmp_path: Path) -> None:
    h = await make(
        tmp_path, faults=["fail:two-ctl1:neutron-db-manage upgrade --contract"], auto_approve=False
    )
    rejected: list[str] = []

    async def decide(gate: ev.GateOpened) -> ev.Command | None:
        if gate.kind == "failure":
            try:
                await h.client.send(ev.Command("skip", "carol", "  ", gate.gate))
            except Exception as exc:
                rejected.append(str(exc))
            return ev.Command("skip", "carol", "contract later in the week", gate.gate)
        return None

    assert await drive(h, decide) == "complete with deviations"
    assert rejected == ["skipping needs a reason"]
    skipped = [e for e in h.events(ev.StepFinished) if e.outcome == "skipped"]
    assert [e.step for e in skipped] == [
        "two/compute/neutron-contract/two-ctl1/neutron.db-contract"
    ]
    assert skipped[0].error == "skipped: contract later in the week"
    journal = read_journal(tmp_path / "journal.jsonl")
    assert any(isinstance(e, ev.GateDecided) and e.operator == "carol" for e in journal.events)


async def test_compute_failures_within_budget_go_on_then_ask() -> None:
    # budget 1: the first failing compute is tolerated, the second opens a gate at once
    h = await make(
        faults=[
            "fail:one-cmp2:systemctl restart nova-compute",
            "fail:one-cmp4:systemctl restart nova-compute",
        ],
        auto_approve=False,
    )
    kinds: list[str] = []

    def decide(gate: ev.GateOpened) -> ev.Command | None:
        kinds.append(gate.kind)
        if gate.kind == "failure":
            return ev.Command("skip", "dave", "hypervisor to be replaced", gate.gate)
        return None

    assert await drive(h, decide) == "complete with deviations"
    assert "budget spent" in next(g.title for g in h.events(ev.GateOpened) if g.kind == "failure")
    # both failing nodes were skipped with the reason; every other compute was upgraded
    skipped_nodes = {h.plan.step(s).node for s in h.step_ids("skipped")}
    assert skipped_nodes == {"one-cmp2", "one-cmp4"}
    others = [
        n
        for n in h.lab.world.nodes.values()
        if n.name.startswith("one-cmp") and n.name not in skipped_nodes
    ]
    assert all(n.units["nova-compute"].code == h.lab.world.target for n in others)


async def test_abort_terminates_running_commands() -> None:
    h = await make(faults=["hang:one-ctl1:glance-manage db sync"])
    h.plan.policy["step_timeout"] = 60
    run = asyncio.create_task(h.engine.run())
    while not any(e.step.endswith("glance.db-sync") for e in h.events(ev.StepStarted)):
        await asyncio.sleep(0.005)
    await h.client.send(ev.Command("abort", "erin", "wrong window"))
    assert await asyncio.wait_for(run, 5) == "aborted"
    interrupted = [e for e in h.events(ev.StepFinished) if e.outcome == "interrupted"]
    assert interrupted and "the command was stopped" in interrupted[0].error
    assert h.lab.world.running == 0  # the lab command really ended
    assert h.events(ev.RunAborted)[0].reason == "wrong window"


async def test_a_hanging_command_times_out_and_raises_a_failure_gate() -> None:
    h = await make(
        faults=["hang:two-ctl1:glance-status upgrade check:1"], policy={"step_timeout": 0.2}
    )

    def decide(gate: ev.GateOpened) -> ev.Command | None:
        return ev.Command("retry", "t", "", gate.gate) if gate.kind == "failure" else None

    h.engine.options.auto_approve = False
    assert await drive(h, decide) == "complete"
    check = [
        e
        for e in h.events(ev.StepFinished)
        if e.step.endswith("glance.status-check") and e.step.startswith("two/")
    ]
    assert [e.outcome for e in check] == ["timed_out", "ok"]


async def test_unreachable_node_is_retried_with_backoff_then_reported() -> None:
    h = await make(
        faults=["unreachable:two-cmp3"], auto_approve=False, policy={"failure_budget": 5}
    )

    def decide(gate: ev.GateOpened) -> ev.Command | None:
        if gate.kind == "failure":
            return ev.Command("skip", "t", "node is down", gate.gate)
        return None

    assert await drive(h, decide) == "complete with deviations"
    output = [
        line
        for e in h.events(ev.StepOutput)
        if e.step.startswith("two/compute") and "two-cmp3" in e.step
        for line in e.lines
    ]
    assert sum("retrying" in line for line in output) == 2  # transport_retries: 2
    assert h.engine.state.nodes["two-cmp3"].reachable is False
    unreachable = [e for e in h.events(ev.StepFinished) if e.outcome == "unreachable"]
    assert unreachable and "connection refused" in unreachable[0].error


async def test_status_check_warning_needs_acknowledgement() -> None:
    h = await make(faults=["warn:one-ctl1:nova-status upgrade check"], auto_approve=False)
    warnings: list[ev.GateOpened] = []

    def decide(gate: ev.GateOpened) -> ev.Command | None:
        if gate.kind == "warning" and "nova-status" in gate.title:
            warnings.append(gate)
        return None  # approve / acknowledge

    assert await drive(h, decide) == "complete"
    assert len(warnings) == 1 and "reported a warning (exit 1)" in warnings[0].title
    assert "Warning" in warnings[0].summary or "Details" in warnings[0].summary
    table = warnings[0].summary.splitlines()  # the check's table as a table, not one line
    assert len(table) >= 5 and table[0].startswith("+---") and table[-1].startswith("+---")
    checked = "one/compute/nova-conductor@one-ctl1/one-ctl1/nova.status-check"
    assert checked in h.step_ids("warning")


async def test_sites_run_in_parallel_up_to_the_limit() -> None:
    for limit, expect_overlap in ((2, True), (1, False)):
        h = await make(policy={"site_concurrency": limit})
        h.lab.world.time_scale = 0.001
        assert await h.engine.run() == "complete"
        spans: dict[str, list[float]] = {}
        for e in h.engine.history:
            if isinstance(e, ev.PhaseStarted | ev.PhaseFinished):
                spans.setdefault(e.phase, []).append(e.mono)
        one, two = spans["one/compute"], spans["two/compute"]
        overlap = one[0] < two[1] and two[0] < one[1]
        assert overlap is expect_overlap, limit


async def test_batches_never_exceed_the_batch_size_in_flight() -> None:
    h = await make()
    h.lab.world.time_scale = 0.001
    assert await h.engine.run() == "complete"
    peak = 0  # the most batch nodes with a step running at once, per site, from the record
    running: dict[str, set[str]] = {}
    for event in h.engine.history:
        if isinstance(event, ev.StepStarted | ev.StepFinished) and "/batch-" in event.step:
            step = h.plan.step(event.step)
            nodes = running.setdefault(step.site, set())
            if isinstance(event, ev.StepStarted):
                nodes.add(step.node)
            else:
                nodes.discard(step.node)
            peak = max(peak, len(nodes))
    assert peak == 2  # batch_size, per site (two sites run at once)


async def test_folding_the_journal_gives_the_engine_final_state(tmp_path: Path) -> None:
    h = await make(tmp_path, faults=["fail:one-cmp3:systemctl restart nova-compute:1:1"])

    def decide(gate: ev.GateOpened) -> ev.Command | None:
        return ev.Command("retry", "t", "", gate.gate) if gate.kind == "failure" else None

    assert await drive(h, decide) == "complete"
    assert h.step_ids("failed") == ["one/compute/batch-1/one-cmp3/nova.restart:nova-compute"]
    h.engine.journal.close()  # type: ignore[union-attr]
    journal = read_journal(tmp_path / "journal.jsonl")
    assert not journal.torn
    replayed = fold(h.plan, journal.events)
    live = h.engine.state
    assert replayed.status == live.status
    assert {k: (v.status, v.attempts, list(v.tail)) for k, v in replayed.steps.items()} == {
        k: (v.status, v.attempts, list(v.tail)) for k, v in live.steps.items()
    }
    assert {k: vars(v) for k, v in replayed.nodes.items()} == {
        k: vars(v) for k, v in live.nodes.items()
    }
    assert [(g.id, g.decision, g.operator) for g in replayed.gates] == [
        (g.id, g.decision, g.operator) for g in live.gates
    ]


async def test_service_states_are_polled_into_node_status_only_on_change() -> None:
    h = await make()
    h.engine.options.status_interval = 0.001
    h.lab.world.time_scale = 0.001
    assert await h.engine.run() == "complete"
    statuses = [e for e in h.events(ev.NodeStatus) if e.services]
    assert statuses and h.engine.state.nodes["one-cmp1"].services["nova-compute"] == "up/enabled"
    seen: dict[str, dict[str, str]] = {}
    for e in statuses:  # never the same report twice in a row for a node
        assert seen.get(e.node) != e.services
        seen[e.node] = e.services
    assert any(e.services.get("nova-compute") == "up/disabled" for e in statuses)
