"""The virtualenv method's restart and running-code probe against a real supervisord: a program
that cannot start on the target's code is said with its own last output (what an operator
reads at the failure gate), not only "not running"."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollgate.core.methods.venv.mapping import MANAGERS
from rollgate.core.recipes import load_recipe, render

pytestmark = pytest.mark.skipif(
    not (shutil.which("supervisord") and shutil.which("supervisorctl")),
    reason="needs supervisor: apt-get install supervisor",
)

# the program: the source's code runs; the target's loads for the seconds in demo.py.delay,
# then dies as nova-compute does with a virt driver it cannot import
PROGRAM = """import mmap, os, sys, time
venv = os.path.realpath(sys.prefix)  # the virtualenv its link points at
if venv.endswith("2026.1"):
    time.sleep(float(open(sys.argv[0] + ".delay").read()))
    print("CRITICAL nova [-] Unable to load the virtualization driver: fake.Nope", flush=True)
    sys.exit(1)
# mapped, as a real program's compiled modules from its virtualenv are
with open(os.path.join(venv, "lib.so"), "rb") as f:
    loaded = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
time.sleep(600)
"""


def _venv(root: Path, release: str, version: str) -> Path:
    """A virtualenv (no pip: fast) with a `demo` distribution of `version` in it."""
    venv = root / release
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    info = site / f"demo-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: demo\nVersion: {version}\n")
    (venv / "lib.so").write_bytes(b"\0" * 4096)
    return venv


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Path]:
    """supervisord with one program, `demo`, run through its link under active/; supervisorctl
    finds the configuration in the working directory, as on a node it finds /etc's."""
    root = tmp_path / "venvs"
    _venv(root, "2025.2", "31.0.0")
    _venv(root, "2026.1", "33.0.0")
    (tmp_path / "active").mkdir()
    (tmp_path / "active/demo").symlink_to(root / "2025.2")
    (tmp_path / "supervisord.conf").write_text(
        f"[unix_http_server]\nfile={tmp_path}/sv.sock\n"
        f"[supervisord]\nlogfile={tmp_path}/supervisord.log\npidfile={tmp_path}/sv.pid\n"
        f"childlogdir={tmp_path}\n"
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
        f"[supervisorctl]\nserverurl=unix://{tmp_path}/sv.sock\n"
        f"[program:demo]\ncommand={tmp_path}/active/demo/bin/python {tmp_path}/demo.py\n"
        "autostart=false\nautorestart=false\nstartsecs=1\nredirect_stderr=true\n"
        f"stdout_logfile={tmp_path}/demo.log\n"
    )
    (tmp_path / "demo.py").write_text(PROGRAM)
    subprocess.run(["supervisord", "-c", str(tmp_path / "supervisord.conf")], check=True,
                   cwd=tmp_path)  # fmt: skip
    try:
        ctl(tmp_path, "supervisorctl start demo")
        yield tmp_path
    finally:
        ctl(tmp_path, "supervisorctl shutdown")
        pid = tmp_path / "sv.pid"
        deadline = time.monotonic() + 10
        while pid.exists() and time.monotonic() < deadline:
            time.sleep(0.1)


def ctl(where: Path, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", command], cwd=where, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "LC_ALL": "C"})  # fmt: skip


def action(name: str, where: Path) -> str:
    found = load_recipe("venv").action("nova", name)
    assert found is not None
    values = {
        **MANAGERS["supervisor"],
        "unit": "demo",
        "active_dir": str(where / "active"),
        "venv_to": str(where / "venvs/2026.1"),
        "venv_base": str(where / "venvs"),
        "service_manager": "supervisor",
        "unit_packages": ["demo", "demo"],
        "units": ["demo"],
        "to": "2026.1",
    }
    return render(found.run, values)


def test_the_source_program_runs_and_is_read_from_its_process(supervisor: Path) -> None:
    done = ctl(supervisor, action("running-version", supervisor))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:4] == ["demo", "demo", "31.0.0", f"{supervisor}/venvs/2025.2/"]


def test_a_program_that_dies_after_its_start_is_not_running_with_its_last_output(
    supervisor: Path,
) -> None:
    (supervisor / "demo.py.delay").write_text("1.2")  # past startsecs: supervisor says started
    restarted = ctl(supervisor, action("restart", supervisor))
    assert restarted.returncode == 0, restarted.stderr
    deadline = time.monotonic() + 10  # it dies 1.2 s after its start
    while "RUNNING" in ctl(supervisor, "supervisorctl status demo").stdout:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    done = ctl(supervisor, action("running-version", supervisor))
    assert done.returncode == 3
    assert done.stdout.strip() == "demo demo not-running"
    assert "| demo: CRITICAL nova [-] Unable to load the virtualization driver" in done.stderr


def test_a_program_that_cannot_start_fails_its_restart_with_its_last_output(
    supervisor: Path,
) -> None:
    (supervisor / "demo.py.delay").write_text("0.1")  # within startsecs: a spawn error
    done = ctl(supervisor, action("restart", supervisor))
    assert done.returncode != 0
    assert "demo did not start, its last output:" in done.stderr
    assert "Unable to load the virtualization driver: fake.Nope" in done.stderr
    # the link moved with the restart: the program is on the target's code, which fails
    assert os.readlink(supervisor / "active/demo") == str(supervisor / "venvs/2026.1")
