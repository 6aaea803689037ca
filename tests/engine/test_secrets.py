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
# more literal credentials in one override, several forms in one command and in its output
MORE = ["Lit4-os-pw", "Lit5-secret-key", "Lit6-mq", "Lit7-pwd"]
DOCTOR = (
    f"keystone-manage doctor --os-password={LITERAL} && "
    f"printf 'db_secret_key={MORE[1]}\\n--os-password {MORE[0]}\\n' && "
    f"printf 'rabbitmqctl add_user openstack {MORE[2]}\\nMYSQL_PWD={MORE[3]}\\n'"
)


def yaml_quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# {} is where the credential goes: each form must hide it and keep the rest readable
FORMS = [
    # key=value (environment, ini, command lines)
    "OS_PASSWORD={}",
    "export OS_PASSWORD='{}'",
    "db_password={}",
    "admin_password = {}",
    "OS_TOKEN={}",
    "api_key={}",
    "secret={}",
    "secret_key={}",
    "AWS_SECRET_ACCESS_KEY={}",
    "private_key={}",
    "memcache_secret_key = {}",
    "auth_encryption_key={}",
    "MYSQL_PWD={}",
    "RABBITMQ_DEFAULT_PASS={}",
    "client_secret={}",
    "os_auth_token={}",
    "AUTH_KEY={}",
    "credential={}",
    "passphrase={}",
    "oauthToken={}",
    # key: value (YAML), key => value (Puppet), "key": "value" (JSON)
    "rabbit_password: {}",
    'password: "{}"',
    "admin_pass: {}",
    "keystone_admin_password: '{}'",
    "password => '{}'",
    ':password => "{}"',
    '"password": "{}"',
    '{{"password":"{}","user":"nova"}}',
    '{{"secret_key": "{}"}}',
    # XML, URL-encoded
    "<password>{}</password>",
    "<adminPass>{}</adminPass>",
    "user=nova&password%3D{}",
    "password%3d{}",
    # CLI flags
    "--password {}",
    "--password={}",
    "--os-password {}",
    "--os-password={}",
    "--os-token {}",
    "--token={}",
    "--client-secret {}",
    # URLs and HTTP headers
    "mysql://nova:{}@db/nova",
    "rabbit://openstack:{}@ctl1:5672/",
    "transport_url = rabbit://openstack:{}@ctl1",
    "connection = mysql+pymysql://nova:{}@db/nova",
    "Authorization: Bearer {}",
    "Authorization: Basic {}",
    "X-Auth-Token: {}",
    "X-Subject-Token: {}",
    # commands that take a credential with no key before it
    "mysql -u root -p{} nova",
    "mysqldump -p{} --all-databases",
    "sshpass -p {} ssh node",
    "sshpass -p'{}' ssh node",
    "CREATE USER 'nova'@'%' IDENTIFIED BY '{}';",
    "ALTER USER root IDENTIFIED WITH mysql_native_password BY '{}'",
    "rabbitmqctl add_user openstack {}",
    "rabbitmqctl change_password openstack {}",
    "htpasswd -b /etc/nginx/htpasswd admin {}",
    "echo 'root:{}' | chpasswd",
    "echo {} | passwd --stdin root",
    "crudini --set /etc/nova/nova.conf keystone_authtoken password {}",
    # in a printf format, ended by an escaped newline
    "printf 'password={}\\nuser=nova'",
    # private keys
    "-----BEGIN RSA PRIVATE KEY-----\nMIIE{}Qab\n-----END RSA PRIVATE KEY-----",
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl{}bnNz\n-----END OPENSSH PRIVATE KEY-----",
]

# names that say where or what a credential is, not what it is: they stay as they are
READABLE = [
    "auth_url = http://ctl1:5000/v3",
    "auth_type = password",
    "ssl_key_file = /etc/ssl/private/nova.key",
    "key_file=/etc/ssl/nova.key",
    "[keystone_authtoken]",
    "auth_section = keystone_authtoken",
    "token_provider = fernet",
    "keystone-manage credential_setup --keystone-user keystone",
    "mysqldump --host=db1 --single-transaction --result-file=/var/backups/x.sql --databases nova",
    "crudini --set /etc/nova/nova.conf upgrade_levels compute auto",
    "ls /etc/keystone/fernet-keys /etc/keystone/credential-keys",
]


def test_the_corpus_holds_every_form_asked_for() -> None:
    assert len(FORMS) >= 50


@pytest.mark.parametrize("form", FORMS)
def test_each_credential_form_is_masked(form: str) -> None:
    text = f"step said: {form.format('hunter2')} (and more)"
    masked = mask(text)
    assert "hunter2" not in masked and MASK in masked, masked
    assert masked.startswith("step said: ") and masked.endswith(" (and more)")


@pytest.mark.parametrize("text", READABLE)
def test_names_that_say_where_a_credential_is_stay_readable(text: str) -> None:
    assert mask(text) == text


@pytest.mark.parametrize("glue", ["\n", "\\n", " ", " && ", "; "])
def test_several_forms_in_one_text_are_each_masked(glue: str) -> None:
    """One value never swallows the next key (`--password X\\n--os-password Y` once masked X
    and left Y)."""
    secrets = [f"s3cr3t{i}x" for i in range(len(FORMS))]
    together = glue.join(form.format(s) for form, s in zip(FORMS, secrets, strict=True))
    masked = mask(together)
    assert [s for s in secrets if s in masked] == []


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
        f"    keystone:doctor: {yaml_quoted(DOCTOR)}\n"
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
    assert [literal for literal in MORE if literal in everything] == []
    assert "db_secret_key=********" in everything  # the step's own output, masked
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
