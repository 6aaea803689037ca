"""One distribution, one import name: the wheel installs only `rollgate`, and Rollgate (its
child processes included) runs the same from a directory that holds packages of its own named
core and tui."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
SMALL = ROOT / "tests" / "engine" / "small.yaml"


def shadowing(where: Path) -> Path:
    """A directory like an operator's tooling repo: packages of its own named core, tui, even
    rollgate, which say so loudly when imported."""
    for name in ("core", "tui", "rollgate"):
        (where / name).mkdir(parents=True)
        (where / name / "__init__.py").write_text(
            f"raise SystemExit('the {name} package of {where} was imported')\n"
        )
    return where


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if built.returncode != 0 and "bdist_wheel" in built.stderr + built.stdout:
        pytest.skip("building a wheel needs setuptools>=70 or wheel: pip install -e '.[test]'")
    assert built.returncode == 0, built.stderr
    (found,) = out.glob("rollgate-*.whl")
    return found


@pytest.mark.integration
def test_the_wheel_installs_one_top_level_name_and_runs_from_anywhere(
    wheel: Path, tmp_path: Path
) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    version = wheel.name.split("-")[1]
    assert {n.split("/")[0] for n in names} == {"rollgate", f"rollgate-{version}.dist-info"}
    assert "rollgate/core/methods/apt/recipe.yaml" in names
    assert "rollgate/themes/rollgate.tcss" in names
    entry_points = (
        zipfile.ZipFile(wheel)
        .read(next(n for n in names if n.endswith("entry_points.txt")))
        .decode()
    )
    assert "[rollgate.methods]" in entry_points and "apt = rollgate.core.methods.apt:METHOD" in (
        entry_points
    )
    here = shadowing(tmp_path / "tools")
    env = {**os.environ, "PYTHONPATH": str(wheel)}  # the wheel itself, importable as it is
    checked = subprocess.run(
        [sys.executable, "-P", "-m", "rollgate", "validate", str(SMALL)],
        capture_output=True, text=True, cwd=here, env=env, timeout=60,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert "ok: cloud small" in checked.stdout


@pytest.mark.integration
def test_a_detached_run_started_beside_packages_named_core_and_tui_completes(
    tmp_path: Path,
) -> None:
    """The detached engine is a child process: it starts by module, so the directory it was
    started from cannot shadow Rollgate's own packages."""
    here = shadowing(tmp_path / "tools")
    env = {**os.environ, "ROLLGATE_STATE_DIR": str(tmp_path / "state")}

    def rollgate(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["rollgate", *args], capture_output=True, text=True, cwd=here, env=env, timeout=120
        )

    started = rollgate("run", str(SMALL), "--detach", "--auto-approve", "--time-scale", "0",
                       "--lab-inprocess")  # fmt: skip
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    deadline = time.monotonic() + 90
    state = ""
    while time.monotonic() < deadline:  # the run's own end, as its status reports it
        status = rollgate("status", run_id, "--json")
        assert status.returncode == 0, status.stderr
        state = json.loads(status.stdout)["state"]
        if state not in ("running", "pending"):
            break
        time.sleep(0.2)
    assert state == "complete"
    log = next((tmp_path / "state" / "runs" / run_id).glob("engine*.log")).read_text()
    assert "was imported" not in log
