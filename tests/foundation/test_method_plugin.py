"""A deployment method from another distribution: installed beside Rollgate, it registers in
the rollgate.methods entry-point group and is validated and planned like a built-in one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

PLUGIN = Path(__file__).parents[1] / "method_plugin"
BASE = Path(__file__).parent / "inventory" / "base.yaml"


def install(site: Path) -> None:
    """What an installer leaves for tests/method_plugin: the package and its dist-info (the
    metadata importlib.metadata reads, entry points from the distribution's pyproject)."""
    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text())["project"]
    shutil.copytree(PLUGIN / "tiny_method", site / "tiny_method")
    info = site / f"tiny_method-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    points = "".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items())
        for group, entries in project["entry-points"].items()
    )
    (info / "entry_points.txt").write_text(points)


def rollgate(site: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if site is not None:
        env["PYTHONPATH"] = str(site)
    return subprocess.run(
        [sys.executable, "-P", "-m", "rollgate", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text("method: tiny\n" + BASE.read_text())
    return path


def test_a_method_of_another_distribution_is_validated_and_planned(
    tmp_path: Path, inventory: Path
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    install(site)

    validated = rollgate(site, "validate", str(inventory))
    assert validated.returncode == 0, validated.stderr
    assert "ok: cloud corpus" in validated.stdout

    planned = rollgate(site, "plan", str(inventory), "--format", "json")
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)
    assert plan["method"] == "tiny"
    commands = [st["command"] for p in plan["phases"] for sg in p["stages"] for st in sg["steps"]]
    assert "tiny-upgrade keystone 2026.1" in commands  # its own recipe's command


def test_without_it_the_inventory_is_refused_naming_the_methods_there_are(
    inventory: Path,
) -> None:
    refused = rollgate(None, "validate", str(inventory))
    assert refused.returncode == 2
    assert "method: 'tiny' is not one of 'apt', 'kolla' or 'venv'" in refused.stderr
