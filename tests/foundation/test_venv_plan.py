"""The virtualenv method's plan and the acceptance harness's own pieces, checked without
installing OpenStack (the acceptance run itself is `python -m tests.acceptance`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollgate.core.inventory import load_inventory
from rollgate.core.plan import Plan, Step, build_plan
from tests.acceptance.configs import Secrets, service_files, supervisord_conf
from tests.acceptance.layout import NODES, PROGRAMS, WSGI_APPS

ACCEPTANCE = Path(__file__).resolve().parents[1] / "acceptance"
INVENTORY = ACCEPTANCE / "inventory.yaml"


@pytest.mark.parametrize("path", sorted(ACCEPTANCE.glob("*.yaml")), ids=lambda p: p.name)
def test_every_inventory_in_the_acceptance_folder_validates(path: Path) -> None:
    assert build_plan(load_inventory(path)).steps


def plan() -> Plan:
    return build_plan(load_inventory(INVENTORY))


def index(steps: list[Step], node: str, action: str, start: int = 0) -> int:
    for i in range(start, len(steps)):
        if steps[i].node == node and steps[i].action == action:
            return i
    raise AssertionError(f"no {action} on {node} after step {start}")


def test_the_target_virtualenv_is_installed_on_every_node_before_the_window() -> None:
    p = plan()
    # each region's services are compared with the inventory first (reading only), then each
    # prepares
    assert [ph.tier for ph in p.phases[:4]] == ["scope", "scope", "prepare", "prepare"]
    first = p.phases[2]
    prepared = {s.node for s in first.steps if s.action == "install-venv"}
    # the database node runs no OpenStack service
    assert prepared == {"key01", "ctl01", "cmp01", "cmp02", "cmp03", "cmp04"}
    install = next(s for s in first.steps if s.action == "install-venv")
    assert "/venvs/2026.1" in install.command and "constraints/2026.1" in install.command
    assert "'nova>=33,<34'" in install.command and "'keystone>=29,<30'" in install.command
    # every service the node runs is read from the new virtualenv at the target's version
    checked = {(s.node, s.args["package"]) for s in first.steps if s.action == "venv-version"}
    assert ("ctl01", "openstack-placement") in checked and ("cmp02", "nova") in checked
    assert all(s.args["expect"] == "2026.1" for s in first.steps if s.action == "venv-version")


def test_each_service_switches_then_runs_the_targets_checks_and_schema_before_its_restart() -> None:
    steps = plan().steps
    switch = index(steps, "key01", "upgrade-packages")
    assert steps[switch].service == "keystone"
    assert (
        index(steps, "key01", "record-version")
        < switch
        < index(steps, "key01", "verify-version", switch)
    )
    check = index(steps, "key01", "status-check", switch)
    expand = index(steps, "key01", "db-expand", switch)
    restart = index(steps, "key01", "restart", switch)
    running = index(steps, "key01", "running-version", switch)
    assert switch < check < expand < restart < running
    # what runs is read from the process, after the start grace, of each program restarted
    assert steps[running].args["settle"] and steps[running].args["expect_running"] == [
        ["keystone", "keystone", "keystone"]
    ]
    assert "/proc/$q/maps" in steps[running].command
    assert "/venvs/2026.1/bin/keystone-status upgrade check" in steps[check].command
    assert "/venvs/2026.1/bin/keystone-manage db_sync --expand" in steps[expand].command
    # the program's own link moves in the same command as its restart, after the schema
    # (a link renamed over the old one: never half-switched); nothing moves it earlier
    assert steps[restart].command == (
        "{ supervisorctl stop keystone || ! supervisorctl status keystone; } && install -d "
        "/openstack/active && ln -sfn "
        "/var/cache/rollgate-acceptance/venvs/2026.1 /openstack/active/keystone.new && mv -T "
        "/openstack/active/keystone.new /openstack/active/keystone && { supervisorctl start "
        "keystone || { rc=$?; echo keystone did not start, its last output: >&2; supervisorctl "
        "tail -3000 keystone 2>&1 | tail -n 20 >&2; exit $rc; }; }"
    )
    assert "ln " not in steps[switch].command


def test_no_program_moves_to_the_target_before_its_own_restart() -> None:
    """Every link is moved only by its own program's restart or start (second review N2: a
    shared link switched before the schema let old processes load new code)."""
    steps = plan().steps
    for step in steps:
        if "ln -sfn" not in (step.command or ""):
            continue
        assert step.action in ("restart", "start"), step.id
        unit = step.id.rsplit(":", 1)[1]
        assert f"/openstack/active/{unit}.new " in step.command, step.id
        assert f"&& {{ supervisorctl start {unit} || " in step.command, step.id
        if step.action == "restart":  # the program is stopped before its link moves
            assert step.command.startswith(f"{{ supervisorctl stop {unit} || "), step.id


def test_previous_migrations_run_from_the_old_virtualenv_and_new_ones_from_the_target() -> None:
    steps = plan().steps
    previous = [s for s in steps if s.action == "previous-migrations"]
    online = [s for s in steps if s.action == "online-migrations"]
    assert previous and all("/venvs/2025.2/bin/" in s.command for s in previous)
    assert online and all("/venvs/2026.1/bin/" in s.command for s in online)


def test_a_compute_is_enabled_only_after_it_reports_on_the_new_code() -> None:
    steps = plan().steps
    for node in ("cmp01", "cmp02"):
        restart = index(steps, node, "restart")
        assert index(steps, node, "wait-compute-up", restart) < index(
            steps, node, "enable-compute", restart
        )


def test_systemd_is_the_other_service_manager(tmp_path: Path) -> None:
    text = INVENTORY.read_text().replace("service_manager: supervisor", "service_manager: systemd")
    (tmp_path / "inv.yaml").write_text(text)
    steps = build_plan(load_inventory(tmp_path / "inv.yaml")).steps
    assert any(
        "&& { systemctl start keystone || " in (s.command or "")
        and "journalctl --no-pager -o cat -n 20 -u keystone" in (s.command or "")
        for s in steps
    )
    (tmp_path / "bad.yaml").write_text(
        text.replace("service_manager: systemd", "service_manager: runit")
    )
    from rollgate.core.inventory import InventoryError

    with pytest.raises(InventoryError, match="service_manager 'runit'"):
        load_inventory(tmp_path / "bad.yaml")


def test_the_harness_layout_is_the_inventorys_cloud() -> None:
    inv = load_inventory(INVENTORY)
    nodes = {n.name: n for site in inv.sites for n in site.nodes}
    assert {name: n.address for name, n in nodes.items()} == NODES
    for node, programs in PROGRAMS.items():  # each program is one of the node's roles
        assert {p.name for p in programs} <= set(nodes[node].roles), node
    assert set(WSGI_APPS) == {p.name for ps in PROGRAMS.values() for p in ps if p.port}


def test_each_node_gets_its_services_config_and_a_supervisor_program_per_service() -> None:
    secrets = Secrets("db-secret", "admin-secret", "service-secret")
    for node, programs in PROGRAMS.items():
        files = service_files(node, secrets)
        conf = supervisord_conf(node)
        for program in programs:
            assert f"[program:{program.name}]" in conf
            assert "autostart = false" in conf  # the installer starts them in order
        assert "db-secret" in files["/root/.my.cnf"]
    compute = service_files("cmp01", secrets)["/etc/nova/nova.conf"]
    assert "host = cmp01" in compute and "FakeDriverWithoutFakeNodes" in compute
    assert "[upgrade_levels]\ncompute = auto" in compute  # the RPC pin the plan checks
    api = service_files("ctl01", secrets)["/etc/nova/nova-api/gunicorn.conf.py"]
    assert "wsgi_app = 'nova.wsgi.osapi_compute:application'" in api


SHIPPED = Path(__file__).resolve().parents[2] / "sample_inventory/runs/acceptance"


def test_the_shipped_acceptance_run_is_a_real_upgrade_with_its_drill_answered() -> None:
    from rollgate.core.client import open_journal_client
    from rollgate.core.report import build_report, to_markdown

    client = open_journal_client(str(SHIPPED))
    report = build_report(client.plan, client.header, client.all_events())
    # the outage drill: glance-api stopped after its phase; the watch's gate, approved
    assert report["outcome"] == "complete with deviations" and not report["not_upgraded"]
    assert [o["what"] for o in report["outages"]] == ["the image API"]
    assert report["outages"][0]["down_s"] is not None
    outage = [g for g in report["gates"] if g["kind"] == "outage"]
    assert [(g["decision"], g["operator"]) for g in outage] == [("approve", "root")]
    # the compute API read anew after the upgrade: the 2026.1 code's newest microversion
    said = " ".join(line for e in client.all_events() if hasattr(e, "lines") for line in e.lines)
    assert "microversions 2.1 to 2.103" in said and "microversions 2.1 to 2.100" not in said
    moved = {c["package"]: (c["before"], c["after"]) for c in report["versions"]}
    assert moved["nova"][0].startswith("32.") and moved["nova"][1].startswith("33.")
    # the drill: the heartbeat check timed out, an operator retried it at its failure gate
    retried = [x for x in report["deviations"]["retries"] if x["node"] == "cmp02"]
    assert [x["step"].rsplit("/", 1)[-1] for x in retried] == ["wait-compute-up"]
    failure = [g for g in report["gates"] if g["kind"] == "failure"]
    assert [(g["decision"], g["operator"]) for g in failure] == [("retry", "root")]
    # the report names every step of the plan, in plan order
    assert [x["step"] for x in report["steps"]] == [s.id for s in client.plan.steps]
    text = to_markdown(report)
    assert "## Steps" in text and "install the 2026.1 virtualenv" in text


def test_a_built_virtualenv_is_kept_and_one_built_otherwise_is_refused_not_deleted(
    tmp_path: Path,
) -> None:
    import subprocess

    from rollgate.core.methods.venv.plan import cloud_services, requirements

    text = INVENTORY.read_text().replace(
        "venv_root: /var/cache/rollgate-acceptance/venvs", f"venv_root: {tmp_path}"
    )
    (tmp_path / "inv.yaml").write_text(text)
    inv = load_inventory(tmp_path / "inv.yaml")
    install = next(s.command for s in build_plan(inv).steps if s.action == "install-venv")
    venv = tmp_path / "2026.1"
    venv.mkdir()
    marker = venv / ".rollgate-ready"
    marker.write_text(
        "".join(f"{r} " for r in requirements(cloud_services(inv), inv.upgrade.target))
    )
    kept = subprocess.run(["sh", "-c", install], capture_output=True, text=True)
    assert kept.returncode == 0 and "already installed" in kept.stdout
    marker.write_text("nova>=1,<2 ")  # built by someone else, maybe running services
    refused = subprocess.run(["sh", "-c", install], capture_output=True, text=True)
    assert refused.returncode == 1 and "built with other requirements" in refused.stderr
    assert marker.read_text() == "nova>=1,<2 "  # nothing deleted


def test_the_virtualenv_build_has_the_build_limit_and_says_its_progress() -> None:
    """The build is network-bound: policy.build_timeout (an hour by default), not the
    window's step_timeout (150 s in the acceptance inventory, which a fresh build on a
    loaded machine overran); pip is not quiet, so the log shows what it collects."""
    from rollgate.core.engine.steps import step_limit

    p = plan()
    assert p.policy["step_timeout"] == 150
    builds = [s for s in p.steps if s.action == "install-venv"]
    assert builds and all(
        step_limit(p.policy, s.action) == (3600.0, "policy.build_timeout") for s in builds
    )
    assert all("--quiet" not in (s.command or "") for s in builds)
    assert step_limit(p.policy, "db-backup") == (150.0, "policy.step_timeout")


TWO_REGIONS = Path(__file__).resolve().parents[2] / "sample_inventory/runs/two-regions"


def test_the_shipped_two_region_run_upgraded_both_regions_under_one_keystone() -> None:
    """The acceptance cloud's two regions (python -m tests.acceptance --record): keystone once
    at dc1, each region's phases, each region's services compared with the inventory and read
    back, the drill's gates answered."""
    from rollgate.core.client import open_journal_client
    from rollgate.core.report import build_report

    client = open_journal_client(str(TWO_REGIONS))
    report = build_report(client.plan, client.header, client.all_events())
    assert report["outcome"] == "complete with deviations" and not report["not_upgraded"]
    assert {p.site for p in client.plan.phases} == {"dc1", "dc2"}
    assert [p.id for p in client.plan.phases if p.tier == "identity"] == ["dc1/identity"]
    said = " ".join(line for e in client.all_events() if hasattr(e, "lines") for line in e.lines)
    assert "RegionOne lists" in said and "RegionTwo lists" in said  # both regions read
    assert [o["what"] for o in report["outages"]] == ["the image API"]  # the drill's only
    failure = [g for g in report["gates"] if g["kind"] == "failure"]
    assert failure and all(g["decision"] == "retry" for g in failure)
    assert [x["step"] for x in report["steps"]] == [s.id for s in client.plan.steps]


def test_the_way_back_for_region_two_of_the_shipped_run_is_planned_for_the_virtualenvs() -> None:
    """`rollgate rollback RUN --site dc2` of the shipped two-region run: the region's phases
    undone the last first, each program restarted through its link on the 2025.2 virtualenv
    and read back against 2025.2, every database restored from the run's own dump with the
    sha256 the journal recorded; keystone (dc1's, shared) untouched."""
    from rollgate.core import events as ev
    from rollgate.core.journal import read_journal
    from rollgate.core.rollback import RollbackRequest, build_rollback_plan

    journal = read_journal(TWO_REGIONS / "journal.jsonl")
    events = list(journal.events)
    plan = build_rollback_plan(
        load_inventory(INVENTORY), journal.header, events, RollbackRequest("two", "dc2")
    )
    assert (plan.source, plan.target) == ("2026.1", "2025.2")
    tiers = [s.id.split("/")[-1].rsplit("-", 1)[0] for s in plan.phases[0].stages]
    assert list(dict.fromkeys(tiers)) == ["block-storage", "compute", "image"]  # last first
    steps = plan.steps
    assert {s.node for s in steps} <= {"ctl02", "cmp05", "cmp06", "cmp07", "cmp08"}
    restarts = [s for s in steps if s.action == "restart"]
    assert restarts and all(
        "ln -sfn /var/cache/rollgate-acceptance/venvs/2025.2 " in (s.command or "")
        for s in restarts
    )
    for read in (s for s in steps if s.action == "running-version"):
        assert read.args["target"] == "2025.2", read.id
    dumps = {e.step: e for e in events if isinstance(e, ev.BackupTaken) and e.node == "ctl02"}
    restores = [s for s in steps if s.action == "db-restore"]
    assert sorted(s.service for s in restores) == sorted(d.service for d in dumps.values())
    for step in restores:
        taken = next(d for d in dumps.values() if d.service == step.service)
        assert step.args["sha256"] == taken.sha256 and taken.sha256 in (step.command or "")
        assert f"sha256sum -c {taken.file}.sha256" in (step.command or "")
    # the programs go back stopped first: every stop of a tier before its first restart
    first_restart = {t: next(i for i, s in enumerate(steps) if s.action == "restart"
                             and f"/{t}-start/" in s.id) for t in ("compute", "image")}  # fmt: skip
    for tier, at in first_restart.items():
        stops = [i for i, s in enumerate(steps) if s.action == "stop" and f"/{tier}-stop/" in s.id]
        assert stops and max(stops) < at, tier


SKIP_LEVEL = Path(__file__).resolve().parents[2] / "sample_inventory/runs/skip-level"


def test_the_shipped_skip_level_run_jumped_two_releases_on_real_services() -> None:
    """python -m tests.acceptance --skip-level --record: 2025.1 -> 2026.1 in one run, each
    downtime gate (a service with no N/N+2 coexistence stopped for its jump) approved, the
    source's online migrations run from the 2025.1 virtualenv before the jump, every service
    read back two releases on."""
    from rollgate.core.client import open_journal_client
    from rollgate.core.report import build_report

    client = open_journal_client(str(SKIP_LEVEL))
    report = build_report(client.plan, client.header, client.all_events())
    assert report["skip_level"] and (report["from"], report["to"]) == ("2025.1", "2026.1")
    assert report["outcome"] == "complete" and not report["not_upgraded"]
    downtime = [g for g in report["gates"] if g["kind"] == "downtime"]
    stopped = {g["title"].split(": ")[1].split()[0] for g in downtime}
    assert stopped == {"keystone", "glance", "placement", "neutron", "cinder"}  # not nova
    assert all(g["decision"] == "approve" for g in downtime)
    steps = client.plan.steps
    previous = [s for s in steps if s.action == "previous-migrations"]
    assert previous and all("/venvs/2025.1/bin/" in (s.command or "") for s in previous)
    jumps = [i for i, s in enumerate(steps) if "-jump/" in s.id]
    for p in previous:  # each before its service stops for the jump (nova does not stop)
        own = [i for i in jumps if steps[i].service == p.service and steps[i].site == p.site]
        assert (p.service == "nova") != bool(own) and steps.index(p) < min(own, default=1e9)
    versions = {v["package"]: (v["before"], v["after"]) for v in report["versions"]}
    assert len(versions) == 6 and all(
        int(after.split(".")[0]) - int(before.split(".")[0]) == 2
        for before, after in versions.values()
    ), versions


ROLLBACK_DRILL = Path(__file__).resolve().parents[2] / "sample_inventory/runs/rollback-drill"


def test_the_shipped_rollback_drill_took_region_two_back_under_its_own_gate() -> None:
    """python -m tests.acceptance --rollback-drill --record: the upgrade of both regions,
    aborted once region two's canary was back on 2026.1; then `rollgate rollback RUN --site
    dc2`, a run of its own whose journal names the run it undid: its gate approved, region
    two's databases restored from the upgrade's own dumps (sha256 checked), every program
    restarted on 2025.2 and read back, complete."""
    from rollgate.core.client import open_journal_client
    from rollgate.core.report import build_report, to_markdown

    up = open_journal_client(str(ROLLBACK_DRILL / "journal.jsonl"))
    up_report = build_report(up.plan, up.header, up.all_events())
    assert up_report["outcome"] == "aborted"
    assert {p.site for p in up.plan.phases} == {"dc1", "dc2"}  # both regions
    back = open_journal_client(str(ROLLBACK_DRILL / "rollback.jsonl"))
    report = build_report(back.plan, back.header, back.all_events())
    assert report["rollback"] == {"run": up.header["run_id"], "site": "dc2", "phase": None}
    assert (report["from"], report["to"], report["outcome"]) == ("2026.1", "2025.2", "complete")
    assert [g["decision"] for g in report["gates"]] and all(
        g["decision"] == "approve" for g in report["gates"]
    )
    steps = back.plan.steps
    assert {s.site for s in steps} == {"dc2"} and {s.node for s in steps} <= {
        "ctl02", "cmp05", "cmp06", "cmp07", "cmp08"}  # fmt: skip
    restores = [s for s in steps if s.action == "db-restore"]
    assert {s.service for s in restores} >= {"glance", "nova", "placement"}
    assert all("sha256sum -c" in (s.command or "") for s in restores)
    assert all("/venvs/2025.2 " in (s.command or "") for s in steps if s.action == "restart")
    assert {x["outcome"] for x in report["steps"]} <= {"ok", "warning"}  # neutron-status warns
    text = to_markdown(report)
    assert text.startswith("# Rollback of acceptance at dc2") and "db-restore" not in text


def test_replay_of_the_drills_rollback_shows_its_gates_as_journalled() -> None:
    """`rollgate replay ROLLBACK --headless`: every decision, with the gate ids as the journal
    has them (a warning gate's id holds ":warning:", which Rich would draw as an emoji)."""
    import subprocess
    import sys

    shown = subprocess.run(
        [sys.executable, "-P", "-m", "rollgate", "replay",
         str(ROLLBACK_DRILL / "rollback.jsonl"), "--headless"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "gate gate:dc2/rollback: approve by auto-approve" in shown.stdout
    assert "gate gate:warning:dc2/rollback/" in shown.stdout and "⚠" not in shown.stdout
