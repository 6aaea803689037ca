"""A failure gate carries the failure itself (step, command, exit status, last output) and
says what each choice will do, in the gate-opened event: every view shows the same."""

from __future__ import annotations

import re
from pathlib import Path

from rollgate.core import events as ev
from tests.cli_helpers import rollgate
from tests.engine.conftest import SMALL, drive, make

FAULT = "fail:one-cmp2:systemctl restart nova-compute"


async def test_a_failure_gate_shows_the_failure_and_what_each_choice_does() -> None:
    h = await make(faults=[FAULT], policy={"failure_budget": 0})
    seen: list[ev.GateOpened] = []

    def decide(gate: ev.GateOpened) -> ev.Command | None:
        if gate.kind == "failure":
            seen.append(gate)
            return ev.Command("skip", "t", "hypervisor to be replaced", gate.gate)
        return None

    try:
        assert await drive(h, decide) == "complete with deviations"
    finally:
        await h.lab.close()
    gate = seen[0]
    lines = gate.summary.splitlines()
    assert lines[0] == "✘ restart nova-compute on one-cmp2: failed"
    assert "  command: systemctl restart nova-compute" in lines
    assert "  exit status 1" in lines
    assert any("injected failure (lab fault), exit 1" in line for line in lines)
    retry, skip, abort = gate.choices
    assert retry == "retry: run 'restart nova-compute' on one-cmp2 again (attempt 2)"
    assert skip.startswith("skip (with a reason): ") and "enable nova-compute on one-cmp2" in skip
    assert "it stays disabled in the scheduler and not upgraded" in skip
    assert abort.startswith("abort: terminate every running command") and "--resume t" in abort
    # what skip said is what it did: those steps were skipped, the compute left fenced
    skipped = {e.step for e in h.events(ev.StepFinished) if e.outcome == "skipped"}
    assert any(s.endswith("one-cmp2/enable-compute") for s in skipped)
    assert h.engine.state.nodes["one-cmp2"].disabled is True


def test_headless_prints_the_failure_and_the_choices_before_asking(tmp_path: Path) -> None:
    out = rollgate(
        tmp_path, "run", str(SMALL), "--headless", "--auto-approve", "--lab-inprocess",
        "--fault", FAULT, "--journal", str(tmp_path / "j.jsonl"),
    )  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    text = out.stdout
    assert "  command: systemctl restart nova-compute" in text
    assert "  ✘ restart nova-compute on one-cmp2: failed" in text  # the budget's end-of-phase gate
    assert "  · retry: run the failed step of each of the 1 node(s) again" in text
    assert re.search(r"  · skip \(with a reason\): the \d+ step\(s\) those nodes have left", text)
    assert "  · abort: terminate every running command" in text
    # the way to resume names this run's own inventory, not a placeholder
    assert f"resume it later with `rollgate run {SMALL.resolve()} --resume " in text
    assert "INVENTORY" not in text


def test_headless_takes_a_note_at_a_gate_prompt(tmp_path: Path) -> None:
    """`note TEXT` typed at a gate's prompt goes to the journal; the gate still waits."""
    import os

    from rollgate.core.journal import read_journal
    from tests.engine.test_crash_resume import at_a_terminal, wait_for_open_gate

    journal = tmp_path / "j.jsonl"
    proc, master = at_a_terminal(
        tmp_path, str(SMALL), "--headless", "--auto-approve", "--lab-inprocess",
        "--journal", str(journal), "--fault", FAULT,
    )  # fmt: skip
    try:
        gate = wait_for_open_gate(journal, proc)
        os.write(master, b"note the hypervisor's BMC shows a PSU fault\n")
        os.write(master, b"abort seen enough\n")
        proc.communicate(timeout=120)
    finally:
        os.close(master)
    events = read_journal(journal).events
    # the operator's (rollgate's own, the release lifecycle's, aside)
    notes = [e for e in events if isinstance(e, ev.OperatorNote) and e.operator != "rollgate"]
    assert [n.text for n in notes] == ["the hypervisor's BMC shows a PSU fault"]
    decided = [e for e in events if isinstance(e, ev.GateDecided) and e.gate == gate.gate]  # type: ignore[attr-defined]
    assert decided and decided[0].decision == "abort"
