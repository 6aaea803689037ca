"""The kolla plan's commands against the real kolla-ansible: the target's release from PyPI in a
cached virtualenv. Every kolla-ansible command the plan renders goes through kolla-ansible's
own argument parser (no Ansible play runs); the preparation's local steps (config backup,
passwords merged with the real kolla-genpwd and kolla-mergepwd, openstack_release set in the
real sample globals.yml, `--version`) run for real on files in a temporary directory."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from rollgate.core.inventory import load_inventory
from rollgate.core.plan import Plan, build_plan
from rollgate.core.recipes import fill_runtime, load_recipe
from tests.kolla_cache import Unavailable, cache_root
from tests.kolla_cache import kolla_venv as kolla_venv_cached

SAMPLE = Path(__file__).parents[2] / "sample_inventory" / "kolla-site.yaml"

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Parses argv as kolla-ansible would, then stops: the command's class and its parsed options.
PARSE = """
import json, sys
from kolla_ansible.cmd.kolla_ansible import KollaAnsibleApp
app = KollaAnsibleApp()
factory, name, rest = app.command_manager.find_command(sys.argv[1:])
parsed = factory(app, None).get_parser("kolla-ansible " + name).parse_args(rest)
print(json.dumps({"command": name, "options": {k: v for k, v in vars(parsed).items()}}))
"""


@pytest.fixture(scope="session")
def kolla_venv() -> Path:
    """The target's kolla-ansible, installed with the plan's own pip requirement, once."""
    try:
        return kolla_venv_cached()
    except Unavailable as exc:
        pytest.skip(str(exc))


def _plan(tmp_path: Path) -> Plan:
    """The sample's plan, its deploy-host paths pointed at `tmp_path` and the cached venv."""
    inventory = load_inventory(SAMPLE)
    recipe = load_recipe("kolla").with_overrides(
        {
            "kolla_venv_root": str(cache_root()),
            "kolla_config_dir": str(tmp_path / "etc-kolla"),
            "kolla_inventory": str(tmp_path / "etc-kolla" / "multinode"),
            "backup_dir": str(tmp_path / "backups"),
        },
        {},
    )
    return build_plan(inventory, recipe)


def _kolla_calls(command: str) -> list[list[str]]:
    """Each kolla-ansible invocation in a step's command (a `&&` chain), as argv."""
    calls = []
    for segment in command.split("&&"):
        argv = shlex.split(segment)
        if argv and argv[0].endswith("/bin/kolla-ansible"):
            calls.append(argv)
    return calls


def test_every_kolla_ansible_command_of_the_plan_parses_with_the_real_cli(
    tmp_path: Path, kolla_venv: Path
) -> None:
    plan = _plan(tmp_path)
    seen: dict[str, int] = {}
    for step in plan.steps:
        for argv in _kolla_calls(step.command or ""):
            if argv[1:] == ["--version"]:
                continue  # run for real below
            proc = subprocess.run(
                [str(kolla_venv / "bin/python"), "-c", PARSE, *argv[1:]],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert proc.returncode == 0, f"{step.id}: {shlex.join(argv)}\n{proc.stderr}"
            parsed = yaml.safe_load(proc.stdout.splitlines()[-1])
            seen[parsed["command"]] = seen.get(parsed["command"], 0) + 1
            options = parsed["options"]
            if parsed["command"] != "install-deps":
                assert options["inventory"] == [str(tmp_path / "etc-kolla" / "multinode")]
            if "--limit" in argv:
                assert options["limit"] == argv[argv.index("--limit") + 1]
            if "--tags" in argv:
                assert options["tags"] == argv[argv.index("--tags") + 1]
    # the procedure's commands, each at least once; upgrade: infra, 6 services, control, the
    # canary, 3 batches, the final nova pass and the enabled services no role models (heat)
    assert set(seen) == {"install-deps", "pull", "prechecks", "mariadb-backup", "upgrade"}
    assert seen["upgrade"] == 1 + 5 + 1 + 1 + 3 + 1 + 1


def test_the_old_syntax_is_what_the_real_cli_rejects(kolla_venv: Path) -> None:
    """The pre-19 shape the recipe used to render fails the same parser this test trusts."""
    for argv in (
        ["-i", "/etc/kolla/multinode", "upgrade", "--tags", "nova", "--limit", "compute01"],
        ["-i", "/etc/kolla/multinode", "mariadb_backup", "--full"],
    ):
        proc = subprocess.run(
            [str(kolla_venv / "bin/python"), "-c", PARSE, *argv],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode != 0, argv


def test_the_preparation_runs_for_real_on_the_real_sample_files(
    tmp_path: Path, kolla_venv: Path
) -> None:
    """config backup, the passwords merged by the real tools, openstack_release set in the
    real sample globals.yml (where it is commented out), `--version` as the plan expects."""
    examples = kolla_venv / "share" / "kolla-ansible" / "etc_examples" / "kolla"
    config = tmp_path / "etc-kolla"
    config.mkdir()
    # the sample inventory runs cinder, which kolla's example globals.yml leaves off
    (config / "globals.yml").write_text(
        (examples / "globals.yml").read_text() + 'enable_cinder: "yes"\n'
    )
    (config / "multinode").write_text("[control]\ncontrol01\n")
    sample = yaml.safe_load((examples / "passwords.yml").read_text())
    old = {key: f"old-{i}" for i, key in enumerate(sorted(sample)[: len(sample) // 2])}
    old["a_password_the_new_release_dropped"] = "kept"
    (config / "passwords.yml").write_text(yaml.safe_dump(old))
    plan = _plan(tmp_path)
    prepare = next(p for p in plan.phases if p.tier == "prepare").steps
    env = {**os.environ, "PATH": f"{kolla_venv / 'bin'}:{os.environ['PATH']}"}
    ran = []
    for step in prepare:
        if step.action in ("install-kolla", "install-deps", "pull", "prechecks"):
            continue  # network, or Ansible plays against hosts
        command = fill_runtime(step.command or "", {"run_id": "test-run"})
        proc = subprocess.run(
            ["bash", "-c", command], capture_output=True, text=True, timeout=120, env=env
        )
        assert proc.returncode == 0, f"{step.id}: {command}\n{proc.stdout}{proc.stderr}"
        last = (proc.stdout.strip().splitlines() or [""])[-1]
        if "expect_match" in step.args:
            assert re.fullmatch(step.args["expect_match"], last), (step.id, last)
        if "expect_line" in step.args:
            assert last == step.args["expect_line"], (step.id, last)
        ran.append(step.action)
    assert ran == [
        "config-backup",
        "kolla-version",
        "merge-passwords",
        "settings-check",
        "set-release",
    ]
    merged = yaml.safe_load((config / "passwords.yml").read_text())
    assert set(sample) <= set(merged)
    assert all(merged[key] not in (None, "") for key in sample)  # generated where new
    assert all(merged[key] == value for key, value in old.items())  # old values kept
    assert (tmp_path / "backups" / "kolla-config-test-run.tar.gz").stat().st_size > 0
    globals_lines = (config / "globals.yml").read_text().splitlines()
    assert 'openstack_release: "2026.1"' in globals_lines


def test_the_backup_guard_reads_enable_mariabackup_as_kolla_writes_it(
    tmp_path: Path, kolla_venv: Path
) -> None:
    """The sample globals.yml leaves mariabackup off (commented): the db-backup step stops
    before a mariadb-backup that would back nothing up; set on, it goes on."""
    examples = kolla_venv / "share" / "kolla-ansible" / "etc_examples" / "kolla"
    config = tmp_path / "etc-kolla"
    config.mkdir()
    (config / "globals.yml").write_text((examples / "globals.yml").read_text())
    (step,) = [s for s in _plan(tmp_path).steps if s.action == "db-backup"]
    guard = (step.command or "").split("&&")[0]
    assert "enable_mariabackup" in (examples / "globals.yml").read_text()
    off = subprocess.run(["bash", "-c", guard], capture_output=True, timeout=30)
    assert off.returncode == 1
    with (config / "globals.yml").open("a") as globals_file:
        globals_file.write('enable_mariabackup: "yes"\n')
    on = subprocess.run(["bash", "-c", guard], capture_output=True, timeout=30)
    assert on.returncode == 0
