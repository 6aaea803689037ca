"""Secrets stay secret: a secret variable's value and a literal password in an override appear
nowhere Rollgate stores or shows, and free text is masked for the common credential forms."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rollgate.core.secrets import MASK, Secrets, mask
from tests.cli_helpers import rollgate

SMALL = Path(__file__).with_name("small.yaml")
VALUE = "Sw0rdf1sh-7c1e"  # the secret variable's value, from the environment
LITERAL = "Hunter3-literal"  # written into a recipe override by hand

FORMS = [
    "OS_PASSWORD={}",
    "export OS_PASSWORD='{}'",
    "db_password={}",
    "rabbit_password: {}",
    '"password": "{}"',
    '{{"password":"{}","user":"nova"}}',
    "--password {}",
    "--password={}",
    "--os-password {}",
    "--os-password={}",
    "mysql://nova:{}@db/nova",
    "rabbit://openstack:{}@ctl1:5672/",
    "Authorization: Bearer {}",
    "Authorization: Basic {}",
    "X-Auth-Token: {}",
    "X-Subject-Token: {}",
    "OS_TOKEN={}",
    "api_key={}",
    "secret={}",
    "admin_password = {}",
    "transport_url = rabbit://openstack:{}@ctl1",
    "connection = mysql+pymysql://nova:{}@db/nova",
    'password: "{}"',
]


@pytest.mark.parametrize("form", FORMS)
def test_each_common_credential_form_is_masked(form: str) -> None:
    text = f"step said: {form.format('hunter2')} (and more)"
    masked = mask(text)
    assert "hunter2" not in masked and MASK in masked
    assert masked.startswith("step said: ") and masked.endswith(" (and more)")


def test_a_secret_value_is_filled_quoted_and_masked_anywhere() -> None:
    secrets = Secrets({"db_password": "it's a p@ss"})
    command = secrets.fill("mysqldump --password={{secret:db_password}} --all")
    assert command == "mysqldump --password='it'\"'\"'s a p@ss' --all"
    assert secrets.mask("login with it's a p@ss failed") == f"login with {MASK} failed"


def inventory(tmp_path: Path) -> Path:
    text = SMALL.read_text().replace(
        "lab:",
        "recipe:\n"
        "  variables:\n"
        "    db_password: {env: ROLLGATE_TEST_DB_PASSWORD}\n"
        "  actions:\n"
        "    db-backup: install -d -m 0700 {{backup_dir}} && mysqldump --password={{db_password}}"
        " --result-file={{backup_dir}}/{{db_password}}.sql --databases {{databases}}\n"
        f"    keystone:doctor: keystone-manage doctor --os-password={LITERAL}\n"
        "lab:",
        1,
    )
    path = tmp_path / "inventory.yaml"
    path.write_text(text)
    return path


@pytest.mark.integration
def test_secrets_appear_nowhere_rollgate_stores_or_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROLLGATE_TEST_DB_PASSWORD", VALUE)
    inv = inventory(tmp_path)
    state = tmp_path / "state"
    shown = []
    run = rollgate(state, "run", str(inv), "--headless", "--auto-approve", "--lab-inprocess")
    assert run.returncode == 0, run.stdout + run.stderr
    run_id = next((state / "runs").iterdir()).name
    for args in (
        ["plan", str(inv), "--detail"],
        ["plan", str(inv), "--format", "json"],
        ["run", str(inv), "--headless", "--dry-run", "--auto-approve"],
        ["report", run_id, "--format", "md"],
        ["report", run_id, "--format", "json"],
        ["replay", run_id, "--headless"],
    ):
        out = rollgate(state, *args)
        assert out.returncode == 0, (args, out.stderr)
        shown.append(out.stdout + out.stderr)
    shown.append(run.stdout + run.stderr)
    # what Rollgate stores; the lab's world.json is the simulated cloud's own disk, on which
    # this inventory asked for a dump file named after the secret
    stored = [
        p.read_bytes().decode(errors="replace")
        for p in state.rglob("*")
        if p.is_file() and p.name not in ("world.json", "world.log")
    ]
    everything = "\n".join(shown + stored)
    assert VALUE not in everything and LITERAL not in everything
    assert "--password={{secret:db_password}}" in everything  # the plan says where it goes
    assert f"written to /var/backups/rollgate/{MASK}.sql" in everything  # the output, masked


def test_a_secret_that_cannot_be_had_refuses_the_start(tmp_path: Path) -> None:
    env = os.environ.pop("ROLLGATE_TEST_DB_PASSWORD", None)
    try:
        out = rollgate(tmp_path, "run", str(inventory(tmp_path)), "--headless", "--lab-inprocess")
    finally:
        if env is not None:
            os.environ["ROLLGATE_TEST_DB_PASSWORD"] = env
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "error: recipe.variables.db_password: the environment variable "
        "ROLLGATE_TEST_DB_PASSWORD is not set; export it before the run"
    )
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())
