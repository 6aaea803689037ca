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


def rollgate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from tui.cli import main; main()", *args],
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
    assert [p["id"] for p in first["phases"]][:2] == ["central/identity", "east/image"]
    step = first["phases"][0]["stages"][0]["steps"][0]
    assert set(step) >= {"id", "action", "node", "executor", "command", "exit_codes"}


def test_plan_tree_summarises_large_batches() -> None:
    out = rollgate("plan", str(ROOT / "sample_inventory" / "multisite-apt.yaml"))
    assert out.returncode == 0, out.stderr
    assert "batches: ams-cmp[003:200] (198 nodes, 10 batches of up to 20)" in out.stdout
    assert "canary ams-cmp[001:002] (2 nodes)" in out.stdout
    assert len(out.stdout.splitlines()) < 400


def test_help_lists_commands() -> None:
    out = rollgate("--help")
    assert out.returncode == 0
    assert "validate" in out.stdout and "plan" in out.stdout
