"""`rollgate validate` and `rollgate plan` as a user runs them: exit codes, output, no traces."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted((ROOT / "sample_inventory").glob("*.yaml"))
BAD = ROOT / "tests" / "foundation" / "inventory" / "bad"
SMALL_INVENTORY = ROOT / "tests" / "engine" / "small.yaml"


def rollgate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-P", "-m", "rollgate", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_every_sample_inventory_validates(sample: Path) -> None:
    out = rollgate("validate", str(sample))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"{sample}: ok: cloud ")


def test_samples_cover_what_the_docs_promise() -> None:
    assert {p.name for p in SAMPLES} >= {
        "lab-two-sites.yaml",
        "multisite-apt.yaml",
        "kolla-site.yaml",
    }


def test_invalid_inventory_exits_2_with_located_errors_and_no_traceback() -> None:
    bad = BAD / "09-unknown-role.yaml"
    out = rollgate("validate", str(bad))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith(f"error: {bad}:21: sites.east.nodes[1].roles[0]: unknown role")
    assert "did you mean 'nova-compute'?" in out.stderr


def test_missing_inventory_file_exits_2() -> None:
    out = rollgate("plan", "does-not-exist.yaml")
    assert out.returncode == 2
    assert "no such file" in out.stderr and "Traceback" not in out.stderr


def test_plan_json_is_the_documented_schema_and_deterministic() -> None:
    sample = str(ROOT / "sample_inventory" / "lab-two-sites.yaml")
    first = json.loads(rollgate("plan", sample, "--format", "json").stdout)
    second = json.loads(rollgate("plan", sample, "--format", "json").stdout)
    assert first == second
    assert first["format"] == "rollgate.plan/1"
    assert first["upgrade"] == {"from": "2025.1", "to": "2026.1", "skip_level": True}
    # central runs keystone alone: its region lists no services by host to compare
    assert [p["id"] for p in first["phases"]][:4] == [
        "east/scope", "west/scope", "central/identity", "east/image"
    ]  # fmt: skip
    step = first["phases"][0]["stages"][0]["steps"][0]
    assert set(step) >= {"id", "action", "node", "executor", "command", "exit_codes"}


def test_plan_tree_summarises_large_batches() -> None:
    out = rollgate("plan", str(ROOT / "sample_inventory" / "multisite-apt.yaml"))
    assert out.returncode == 0, out.stderr
    assert "batches: ams-cmp[003:200] (198 nodes, 10 batches of up to 20)" in out.stdout
    assert "canary ams-cmp[001:002] (2 nodes)" in out.stdout
    assert len(out.stdout.splitlines()) < 1000  # 6,755 steps, 320 computes: batches summarised


def test_plan_detail_piped_never_wraps_a_command() -> None:
    """Commands are copied from `plan --detail`: each is on one line, whole, however long."""
    from rollgate.core.inventory import load_inventory
    from rollgate.core.plan import build_plan
    from rollgate.core.secrets import mask

    out = rollgate("plan", str(SMALL_INVENTORY), "--detail")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    commands = {mask(s.command) for s in build_plan(load_inventory(SMALL_INVENTORY)).steps
                if s.command and s.action == "db-backup"}  # fmt: skip
    assert commands and max(len(c) for c in commands) > 200  # longer than any terminal line
    for command in commands:
        assert any(command in line for line in lines), command


def test_help_lists_commands() -> None:
    out = rollgate("--help")
    assert out.returncode == 0
    assert "validate" in out.stdout and "plan" in out.stdout


@pytest.mark.parametrize("scale", ["nan", "inf", "-1", "1e9"])
def test_a_time_scale_that_is_not_a_finite_number_is_refused(scale: str) -> None:
    out = rollgate("run", str(SMALL_INVENTORY), "--headless", "--time-scale", scale)
    assert out.returncode == 2
    assert "is not a time scale from 0 (instant) to 1000" in out.stderr


def test_validate_warns_about_a_window_that_is_over(tmp_path: Path) -> None:
    past = tmp_path / "past.yaml"
    past.write_text(
        SMALL_INVENTORY.read_text()
        + "window: {start: 2020-01-01T22:00:00Z, end: 2020-01-02T04:00:00Z}\n"
    )
    out = rollgate("validate", str(past))
    assert out.returncode == 0
    assert "warning:" in out.stderr and "in the past" in out.stderr
