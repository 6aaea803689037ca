"""The acceptance cloud's resources before the upgrade, and what is checked after it."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.acceptance import layout
from tests.acceptance.cloud import DATABASES, Cloud, SetupError
from tests.acceptance.layout import (
    COMPUTES_OF,
    CONTROLLERS,
    PROGRAMS,
    SITE_OF,
    SITES,
    TARGET,
    VENVS,
    Program,
)

Check = tuple[str, bool, str]


def service_of(name: str) -> str:
    """A program's, a distribution's, a database's or a status tool's service."""
    head = name.removeprefix("openstack-").split("-")[0].split("_")[0]
    return "nova" if head == "compute" else head


@dataclass(frozen=True)
class Expected:
    """What the cloud runs once the harness's runs are over: each site's services on a release
    (the upgrade: the target everywhere; the rollback drill: region two back on the source,
    region one's cinder never reached), the nodes a drill left not upgraded on purpose (their
    programs are not read)."""

    default: str
    releases: dict[tuple[str, str], str] = field(default_factory=dict)  # (site, service)
    left: frozenset[str] = frozenset()

    def of(self, site: str, name: str) -> str:
        return self.releases.get((site, service_of(name)), self.default)

    def all(self) -> set[str]:
        return {self.default, *self.releases.values()}

    def programs(self) -> list[tuple[str, Program, str]]:
        """(node, program, release) of every program the checks read."""
        return [(node, p, self.of(SITE_OF[node], p.dist)) for node, programs in PROGRAMS.items()
                if node not in self.left for p in programs]  # fmt: skip


def connect(region: str = "RegionOne") -> Any:
    import openstack

    return openstack.connect(cloud="rollgate-acceptance", region_name=region)


def _wait(what: str, probe: Any, timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise SetupError(f"{what}: not within {timeout:g}s")
        time.sleep(1)


def create_resources(conns: dict[str, Any]) -> dict[str, Any]:
    """A project and a member with a token (keystone's, shared); in each region a public
    image, three servers spread over its first two computes, a volume."""
    conn = conns["dc1"]
    project = conn.identity.create_project(name="acceptance", domain_id="default")
    user = conn.identity.create_user(
        name="demo",
        password="demo-password-not-secret",
        domain_id="default",
        default_project_id=project.id,
    )
    member = conn.identity.find_role("member")
    conn.identity.assign_project_role_to_user(project, user, member)
    demo = conn.connect_as(
        username="demo",
        password="demo-password-not-secret",
        project_name="acceptance",
        user_domain_name="Default",
        project_domain_name="Default",
    )
    made: dict[str, Any] = {"token": demo.auth_token}
    for site, region_conn in conns.items():
        made[site] = _region_resources(region_conn, list(COMPUTES_OF[site])[:2])
    return made


def _region_resources(conn: Any, hosts: list[str]) -> dict[str, Any]:
    flavor = conn.compute.create_flavor(name="tiny", ram=64, vcpus=1, disk=1)
    image = conn.image.create_image(
        name="blob",
        disk_format="raw",
        container_format="bare",
        visibility="public",
        data=b"\0" * 4096,
        # what a libvirt compute records at boot; the fake driver records nothing, and
        # nova-status warns of instances without a machine type ("hw_machine_type unset")
        hw_machine_type="q35",
    )
    _wait("image active", lambda: conn.image.get_image(image.id).status == "active")
    servers = []
    for i, host in enumerate((hosts[0], hosts[1], hosts[0]), 1):
        servers.append(
            conn.compute.create_server(
                name=f"before-{i}",
                image_id=image.id,
                flavor_id=flavor.id,
                networks="none",
                availability_zone=f"nova:{host}",
            )
        )
    for server in servers:
        conn.compute.wait_for_server(server, status="ACTIVE", wait=180)
    volume = conn.block_storage.create_volume(name="before", size=1)
    conn.block_storage.wait_for_status(volume, status="available", wait=180)
    placed = {s.name: conn.compute.get_server(s.id).compute_host for s in servers}
    return {
        "flavor": flavor.id,
        "image": image.id,
        "volume": volume.id,
        "servers": {s.id: placed[s.name] for s in servers},
    }


def _api_max_version(conn: Any, service: str) -> str:
    """The newest microversion the running API announces (its version document)."""
    root = conn.session.get(conn.endpoint_for(service).rstrip("/").rsplit("/v", 1)[0] + "/")
    data = root.json()
    versions = data.get("versions") or [data.get("version") or {}]
    if isinstance(versions, dict):  # nova: {"versions": [...]} ; placement the same
        versions = versions.get("values", [])
    found = [str(v.get("max_version") or v.get("version") or "") for v in versions]
    numbered = [v for v in found if v]  # nova's v2.0 announces no microversion
    return max(numbered, key=lambda v: tuple(int(x) for x in v.split("."))) if numbered else ""


CODE_MAX = {  # what the code of a release announces, read from its virtualenv
    "compute": "from nova.api.openstack.api_version_request import _MAX_API_VERSION as v",
    "placement": "from placement.microversion import max_version_string as f; v = f()",
}


def _code_max(release: str, service: str) -> str:
    out = subprocess.run(
        [str(VENVS / release / "bin/python"), "-c", f"{CODE_MAX[service]}; print(v)"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


# Each database's alembic tree inside its package: (package, directory), its heads read from
# the 2026.1 virtualenv's own files with alembic (not from Rollgate's core/upstream.py)
ALEMBIC = {
    "keystone": ("keystone", "common/sql/migrations"),
    "glance": ("glance", "db/sqlalchemy/alembic_migrations"),
    "placement": ("placement", "db/sqlalchemy/alembic"),
    "nova_api": ("nova", "db/api/migrations"),
    "nova": ("nova", "db/main/migrations"),
    "nova_cell0": ("nova", "db/main/migrations"),
    "neutron": ("neutron", "db/migration/alembic_migrations"),
    "cinder": ("cinder", "db/migrations"),
}
# the heads alembic keeps rows for: a head another head depends on (glance's expand, which
# its contract's depends_on names) has no row of its own once both are applied
HEADS = """
import importlib, os, sys
from alembic.script import ScriptDirectory
pkg, sub = sys.argv[1:3]
base = os.path.dirname(importlib.import_module(pkg).__file__)
d = ScriptDirectory(os.path.join(base, sub), recursive_version_locations=True)
heads = d.get_heads()
def under(h):
    return {r.revision for r in d.revision_map._get_ancestor_nodes([d.get_revision(h)])} - {h}
print(" ".join(sorted(h for h in heads if not any(h in under(o) for o in heads))))
"""


def _heads(release: str, package: str, sub: str) -> tuple[list[str], str]:
    done = subprocess.run(
        [str(VENVS / release / "bin/python"), "-c", HEADS, package, sub],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return sorted(done.stdout.split()), done.stderr.strip()[-200:]


def schema_heads(cloud: Cloud, expected: Expected) -> Check:
    """Each database of each region's server has its release's code's heads in
    alembic_version (keystone's: key01's release)."""
    off, count = [], 0
    for database, (package, sub) in ALEMBIC.items():
        for site in SITES:
            if database not in DATABASES[site]:
                continue
            release = expected.of(site, database)
            want, error = _heads(release, package, sub)
            count += 1
            query = f"SELECT version_num FROM {database}.alembic_version"
            found = sorted(r[0] for r in cloud.sql(query, site))
            if not want or found != want:
                off.append(f"{site} {database}: {found} ({release} heads {want or error})")
    releases = "/".join(sorted(expected.all()))
    return (
        f"every database's schema at its release's alembic heads ({releases})",
        not off,
        f"{count} databases" if not off else "; ".join(off),
    )


def new_code_before_its_restart(
    cloud: Cloud, events: Callable[[], list[dict[str, Any]]]
) -> list[str]:
    """Programs whose processes have the 2026.1 virtualenv mapped before the run started
    that program's own restart (or start): new code under an old process, or a worker
    respawned from a switched link. Reading thirteen nodes takes seconds: the journal is read
    again after, and a program whose restart began meanwhile is not counted."""

    def begun() -> set[str]:
        return {e.get("step", "") for e in events() if e.get("type") == "step-started"}

    def restarted(node: str, program: str, steps: set[str]) -> bool:
        mine = (f".restart:{program}", f".start:{program}")
        return any(f"/{node}/" in s and s.endswith(mine) for s in steps)

    before = begun()
    off: list[tuple[str, str, str]] = []
    for node, programs in PROGRAMS.items():
        for p in programs:
            if restarted(node, p.name, before):
                continue  # its restart began: from here on it runs the target
            pid = cloud.on(node, f"supervisorctl pid {p.name}", check=False).stdout.strip()
            if not pid.isdigit() or pid == "0":
                continue
            pids = [pid, *cloud.on(node, f"pgrep -P {pid}", check=False).stdout.split()]
            for q in pids:
                mapped = cloud.on(node, f"cat /proc/{q}/maps", check=False).stdout
                if str(VENVS / TARGET) + "/" in mapped:
                    off.append((node, p.name, q))
    after = begun() if off else before
    return [
        f"{node}:{name} pid {q} maps {VENVS / TARGET} before its restart"
        for node, name, q in off
        if not restarted(node, name, after)
    ]


def processes_on_release(cloud: Cloud, expected: Expected) -> Check:
    """Every program's processes (supervisor's pid and its children: gunicorn's workers)
    have their release's virtualenv in their memory maps or command line, and no other."""
    off, seen = [], 0
    known = expected.all() | {TARGET, layout.SOURCE}
    others = {r: [str(VENVS / o) + "/" for o in known if o != r] for r in known}
    for node, p, release in expected.programs():
        pid = cloud.on(node, f"supervisorctl pid {p.name}", check=False).stdout.strip()
        if not pid.isdigit() or pid == "0":
            off.append(f"{node}:{p.name} has no process")
            continue
        pids = [pid, *cloud.on(node, f"pgrep -P {pid}", check=False).stdout.split()]
        for q in pids:
            mapped = cloud.on(
                node, f"cat /proc/{q}/maps; tr '\\0' ' ' < /proc/{q}/cmdline", check=False
            ).stdout
            seen += 1
            if str(VENVS / release) not in mapped or any(o in mapped for o in others[release]):
                off.append(f"{node}:{p.name} pid {q} does not run from {VENVS / release}")
    return (
        "every program's processes run their release's virtualenv's code",
        not off and seen > 0,
        f"{seen} processes" if not off else "; ".join(off[:6]),
    )


def after_run(
    cloud: Cloud,
    conns: dict[str, Any],
    before: dict[str, Any],
    run_ids: list[str],
    run_started: float,
    expected: Expected,
) -> list[Check]:
    """What an operator checks once the runs (`run_ids`: the upgrade, and the rollback drill's
    rollback) are over: every program on its release, running, restarted; schemas; APIs;
    status checks; the resources from before; the reports."""
    results: list[Check] = []
    # every service runs its release's code: its links, its processes, its APIs
    bad, count = [], 0
    for node, p, release in expected.programs():
        target = cloud.on(node, f"readlink /openstack/active/{p.name}").stdout.strip()
        count += 1
        if target != str(VENVS / release):
            bad.append(f"{node}:{p.name}->{target}")
    results.append(("every program's link is its release's virtualenv", not bad,
                    f"{count} links" if not bad else f"{bad}"))  # fmt: skip
    # restarted: by the journals, every program a run restarted has a process younger than
    # the runs; a program no run restarted is a fault unless it stays on the source (the
    # rollback drill's computes the aborted run never reached keep their 2025.2 process)
    restarted = restarted_by(run_ids)
    stale = []
    for node, p, release in expected.programs():
        line = cloud.on(node, f"supervisorctl status {p.name}", check=False).stdout
        if "RUNNING" not in line:
            stale.append(f"{node}:{p.name} {line.strip()}")
            continue
        if (node, p.name) not in restarted:
            if release != layout.SOURCE:
                stale.append(f"{node}:{p.name} on {release} but no run restarted it")
            continue
        pid = cloud.on(node, f"supervisorctl pid {p.name}").stdout.strip()
        age = float(cloud.on(node, f"ps -o etimes= -p {pid}").stdout.strip() or 0)
        if age > time.monotonic() - run_started:
            stale.append(f"{node}:{p.name} restarted by the run, yet its process is older")
    kept = sum(1 for node, p, _ in expected.programs() if (node, p.name) not in restarted)
    results.append(("every program running; each one a run restarted, restarted", not stale,
                    f"{count} programs ({kept} never restarted, on the source)" if not stale
                    else "; ".join(stale)))  # fmt: skip
    results.append(processes_on_release(cloud, expected))
    results.append(schema_heads(cloud, expected))
    for site, conn in conns.items():
        region = SITES[site]
        for service in CODE_MAX:
            release = expected.of(site, service)
            api, want = _api_max_version(conn, service), _code_max(release, service)
            results.append(
                (
                    f"{region}: {service} API announces the {release} code's newest microversion",
                    bool(api) and api == want,
                    f"API {api}, {release} code {want}",
                )
            )
    # schemas at head; the status check of each one's release, on each region's controller
    checks = [("keystone schema at head", "key01", "keystone-manage db_sync --check")]
    for site in SITES:
        ctl, region = CONTROLLERS[site][0], SITES[site]
        checks.append((f"{region}: glance schema at head", ctl, "glance-manage db check"))
        for tool in ("nova-status", "placement-status", "cinder-status"):
            checks.append((f"{region}: {tool} upgrade check ({expected.of(site, tool)})", ctl,
                           f"{tool} upgrade check"))  # fmt: skip
    for name, node, command in checks:
        release = expected.of(SITE_OF[node], command)
        done = cloud.on(node, f"{VENVS / release}/bin/{command}", check=False)
        results.append(
            (
                name,
                done.returncode == 0,
                f"exit {done.returncode}"
                + ("" if done.returncode == 0 else f": {done.stdout.strip()[-300:]}"),
            )
        )
    # the resources survived: the token (keystone's, validated in each region's catalog)
    for site, conn in conns.items():
        check = conn.session.get(
            conn.endpoint_for("identity").rstrip("/") + "/auth/tokens",
            headers={"X-Subject-Token": before["token"]},
            raise_exc=False,
        )
        results.append(
            (
                f"{SITES[site]}: the token issued before the upgrade validates",
                check.status_code == 200,
                f"HTTP {check.status_code}",
            )
        )
    for site, conn in conns.items():
        results += region_resources(conn, SITES[site], before[site])
    # each run's report names every step
    for run_id in run_ids:
        report = subprocess.run(
            ["rollgate", "report", run_id, "--format", "json"], capture_output=True, text=True
        )
        results.append(_report_names_steps(report.stdout, run_id))
    return results


def region_resources(conn: Any, region: str, before: dict[str, Any]) -> list[Check]:
    """The region's servers from before ACTIVE on their hosts; a new server boots; a new
    volume is created."""
    results: list[Check] = []
    moved = []
    for server_id, host in before["servers"].items():
        server = conn.compute.get_server(server_id)
        if server.status != "ACTIVE" or server.compute_host != host:
            moved.append(f"{server.name}: {server.status} on {server.compute_host}")
    results.append(
        (
            f"{region}: the three servers are ACTIVE on their hosts",
            not moved,
            "; ".join(moved) or ", ".join(sorted(before["servers"].values())),
        )
    )
    try:
        server = conn.compute.create_server(
            name="after", image_id=before["image"], flavor_id=before["flavor"], networks="none"
        )
        server = conn.compute.wait_for_server(server, status="ACTIVE", wait=180)
        results.append((f"{region}: a new server boots", True, f"on {server.compute_host}"))
    except Exception as exc:  # the check says what failed
        results.append((f"{region}: a new server boots", False, str(exc)[:300]))
    try:
        volume = conn.block_storage.create_volume(name="after", size=1)
        conn.block_storage.wait_for_status(volume, status="available", wait=180)
        results.append((f"{region}: a new volume is created", True, volume.id))
    except Exception as exc:
        results.append((f"{region}: a new volume is created", False, str(exc)[:300]))
    return results


def outage_reported(run_id: str) -> Check:
    """The report gives the image API's outage (the drill's) with its time down, and no
    other outage."""
    report = subprocess.run(
        ["rollgate", "report", run_id, "--format", "json"], capture_output=True, text=True
    )
    try:
        outages = json.loads(report.stdout).get("outages", [])
    except ValueError:
        return ("the report gives the drill's outage", False, "rollgate report printed no JSON")
    found = [f"{o['what']} at {o['site']}: {o['down_s']} s" for o in outages]
    return (
        "the report gives the drill's outage (the image API), and only it",
        [o["what"] for o in outages] == ["the image API"] and outages[0]["down_s"] is not None,
        "; ".join(found) or "no outage",
    )


def restarted_by(run_ids: list[str]) -> set[tuple[str, str]]:
    """(node, program) of every restart or start a run's journal says began."""
    from rollgate.core.runs import resolve_journal

    out = set()
    for run_id in run_ids:
        for line in resolve_journal(run_id).read_text().splitlines():
            if '"step-started"' not in line:
                continue
            step = json.loads(line).get("step", "")
            parts = step.split("/")
            last = parts[-1]
            for verb in (".restart:", ".start:"):
                if verb in last and len(parts) >= 2:
                    out.add((parts[-2], last.split(verb, 1)[1]))
    return out


def start_failure_named(run_id: str, node: str, cause: str, figures: dict[str, Any]) -> list[Check]:
    """The start-failure drill: its gate named the node and showed what the program said
    (`cause` in its last output); `status --json` and the report name the node, and only it,
    as not upgraded."""
    gates = figures.get("start-failure gates", [])
    said = json.dumps(gates)
    out: list[Check] = [
        (
            f"the start-failure gate names {node} and its last output says why",
            bool(gates) and node in said and cause in said,
            f"{len(gates)} gate(s); first: {gates[0] if gates else None}"[:400],
        )
    ]
    status = subprocess.run(["rollgate", "status", run_id, "--json"], capture_output=True,
                            text=True)  # fmt: skip
    report = subprocess.run(["rollgate", "report", run_id, "--format", "json"],
                            capture_output=True, text=True)  # fmt: skip
    for name, text in (("status --json", status.stdout), ("the report", report.stdout)):
        try:
            left = json.loads(text).get("not_upgraded", [])
        except ValueError:
            left = None
        names = sorted(str(n.get("node")) for n in left or [])
        out.append((f"{name} names {node}, and only it, as not upgraded", names == [node],
                    f"{names}: {[n.get('why') for n in left or []]}"[:400]))  # fmt: skip
    return out


def _report_names_steps(text: str, run_id: str) -> Check:
    from rollgate.core.client import open_journal_client

    try:
        report = json.loads(text)
    except ValueError:
        return ("the report names every step", False, "rollgate report printed no JSON")
    plan = open_journal_client(run_id).plan
    dumped = json.dumps(report)
    missing = [s.title for s in plan.steps if s.title not in dumped]
    return (
        f"the report of {run_id} names every step",
        not missing,
        f"{len(plan.steps)} steps" if not missing else f"missing: {missing[:5]}",
    )
