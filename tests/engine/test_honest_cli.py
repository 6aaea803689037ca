"""What the command line says is what happened: dry runs, run text shown as is, clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollgate.core.inventory import load_inventory
from rollgate.core.plan import build_plan
from rollgate.core.runs import list_runs
from tests.cli_helpers import rollgate

SMALL = Path(__file__).with_name("small.yaml")


def with_override(tmp_path: Path, action: str, run: str | None) -> Path:
    value = "null" if run is None else repr(run)
    text = SMALL.read_text().replace("lab:", f"recipe:\n  actions:\n    {action}: {value}\nlab:", 1)
    path = tmp_path / "inventory.yaml"
    path.write_text(text)
    return path


@pytest.mark.integration
def test_a_dry_run_is_recorded_as_one_and_prints_every_step_unwrapped(tmp_path: Path) -> None:
    journal = tmp_path / "dry.jsonl"
    out = rollgate(
        tmp_path, "run", str(SMALL), "--headless", "--dry-run", "--auto-approve",
        "--journal", str(journal),
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    plan = build_plan(load_inventory(SMALL))
    would = [line for line in out.stdout.splitlines() if line.startswith("would run ")]
    assert len(would) == len(plan.steps)
    from rollgate.core.journal import read_journal
    from rollgate.core.recipes import fill_runtime

    run_id = read_journal(journal).header["run_id"]
    for step in plan.steps:  # each on one line, whole: nothing wrapped
        if step.command is not None:
            command = fill_runtime(step.command, {"run_id": run_id})
            assert any(line.endswith(f": {command}") for line in would), step.id
    api = [line for line in would if line.startswith("would run API call ")]
    assert len(api) == sum(1 for s in plan.steps if s.executor == "cloud") > 0
    assert [r.state for r in list_runs_in(tmp_path)] == ["dry-run, complete"]
    report = rollgate(tmp_path, "report", str(journal), "--format", "md")
    assert report.stdout.splitlines()[0].startswith("# DRY RUN (nothing was executed): ")
    real = rollgate(
        tmp_path, "run", str(SMALL), "--headless", "--lab-inprocess", "--resume", str(journal)
    )
    assert real.returncode == 2
    assert "was a dry run: it cannot be resumed as a real run" in real.stderr


def list_runs_in(state: Path) -> list:  # type: ignore[type-arg]
    import os

    old = os.environ.get("ROLLGATE_STATE_DIR")
    os.environ["ROLLGATE_STATE_DIR"] = str(state)
    try:
        return list_runs()
    finally:
        if old is None:
            del os.environ["ROLLGATE_STATE_DIR"]
        else:
            os.environ["ROLLGATE_STATE_DIR"] = old


@pytest.mark.integration
def test_markup_in_command_output_is_shown_as_is_in_a_run_and_its_resume(tmp_path: Path) -> None:
    inventory = with_override(tmp_path, "glance:db-sync", "[/bold] [database] sync")
    journal = tmp_path / "j.jsonl"
    args = ["run", str(inventory), "--headless", "--auto-approve", "--lab-inprocess"]
    first = rollgate(tmp_path, *args, "--journal", str(journal))
    again = rollgate(tmp_path, *args, "--resume", str(journal))
    for out in (first, again):
        assert out.returncode == 1, out.stdout + out.stderr  # paused at the failure gate
        assert "Traceback" not in out.stderr and "MarkupError" not in out.stderr
        assert "sh: 1: [/bold]: command not found" in out.stdout
        assert "decision [retry/skip/abort]" not in out.stdout  # no terminal: not asked
        assert "no terminal to decide this failure gate" in out.stdout


@pytest.mark.parametrize("command", ["validate", "plan", "check", "run"])
def test_an_unknown_placeholder_in_a_recipe_override_is_refused_with_its_line(
    tmp_path: Path, command: str
) -> None:
    inventory = with_override(tmp_path, "glance:db-check", "glance-manage {{nosuch}} db check")
    out = rollgate(tmp_path, command, str(inventory))
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.startswith(f"error: {inventory}:34: recipe.actions.glance:db-check: ")
    assert "{{nosuch}} is no value Rollgate knows" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_plan_changed_refusal_is_computed_at_scale() -> None:
    """70,000 steps: the comparison is linear (quadratic took minutes; the suite's per-test
    timeout fails it)."""
    from rollgate.core.session import _plan_differences

    n = 70_000
    old = {"phases": [{"stages": [{"steps": [{"id": f"s{i}"} for i in range(n)]}]}]}

    class Shifted:
        steps = [type("S", (), {"id": f"s{i}"})() for i in range(1, n + 1)]

    said = _plan_differences(old, Shifted())  # type: ignore[arg-type]
    assert said == "1 steps added (first: s70000); 1 steps removed (first: s0)"


@pytest.mark.integration
def test_a_plan_that_never_switches_the_package_source_fails_in_the_lab(tmp_path: Path) -> None:
    """The lab's apt finds nothing new until the source points at the target, so a plan
    without `package-source` moves no package; the version checks fail the run and the
    report names the nodes still on the old release, with their versions."""
    inventory = with_override(tmp_path, "package-source", None)
    journal = tmp_path / "j.jsonl"
    out = rollgate(
        tmp_path, "run", str(inventory), "--headless", "--auto-approve", "--lab-inprocess",
        "--journal", str(journal),
    )  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    assert "which is 2025.1 (Epoxy), not the target 2025.2: the package did not move" in out.stdout
    report = rollgate(tmp_path, "report", str(journal), "--format", "json")
    import json

    stale = {n["node"]: n["installed"] for n in json.loads(report.stdout)["not_upgraded"]}
    still_old = [name for name, found in stale.items() if any(":27." in v for v in found.values())]
    assert still_old, stale


def test_log_lines_name_steps_and_phases_by_title_never_by_id() -> None:
    from rollgate.core import events as ev
    from rollgate.core.inventory import load_inventory
    from rollgate.core.narrate import describe
    from rollgate.core.plan import build_plan
    from tests.engine.conftest import SMALL

    plan = build_plan(load_inventory(SMALL))
    step, phase = plan.phases[1].steps[0], plan.phases[1]
    failed = ev.StepFinished(seq=1, time=0, step=step.id, attempt=1, outcome="failed", error="x")
    line = describe(failed, plan) or ""
    assert step.id not in line and step.title in line and step.node in line
    started = describe(ev.PhaseStarted(seq=2, time=0, phase=phase.id), plan) or ""
    assert started == f"phase {phase.title} at {phase.site} started"
