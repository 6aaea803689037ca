"""The lab's model of a cloud: packages, running code, schemas and service records, and the
rules a real cloud enforces on them (see docs/lab.md for the list).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollgate.core.faults import Faults
from rollgate.core.inventory import Inventory
from rollgate.core.lab.jobs import LabJobs
from rollgate.core.methods import method
from rollgate.core.releases import CATALOGUE, Release, find_release, site_series
from rollgate.core.roles import ROLES
from rollgate.core.runs import write_private

APT = method("apt")  # a lab node is an Ubuntu node: its packages and units have apt's names

# Realistic durations in seconds, multiplied by the time scale.
DURATIONS = {
    "apt-install": 90.0,
    "apt-update": 8.0,
    "restart": 6.0,
    "db": 25.0,
    "check": 4.0,
    "backup": 30.0,
    "api": 0.5,
    "down-after-restart": 4.0,
    # oslo.service's report_interval and nova's service_down_time: a service writes a
    # heartbeat every 10 s and counts as up until 60 s after its last one
    "report-interval": 10.0,
    "service-down-time": 60.0,
    "quick": 0.3,
}

HORIZON_BASE = 21  # horizon releases independently; a stand-in major per release index


def package_version(service: str, release: Release) -> str:
    major = release.majors.get(service, HORIZON_BASE + release.index)
    return f"3:{major}.1.0-0ubuntu1~cloud0"


@dataclass
class Unit:
    name: str
    code: Release  # what the running process runs (new packages need a restart)
    active: bool = True
    down_until: float = 0.0  # the process started: it is ready (and reports) from then on
    last_report: float | None = None  # the last heartbeat of the process before this one
    crashes: bool = False  # a lab fault: the new process exits before its first report
    dies_at: float | None = None  # a lab fault: the running process dies then (loop time)
    started_at: float = 0.0  # when its process started (loop time)

    def alive(self, now: float) -> bool:
        """Its process runs now (it may still be starting)."""
        return self.active and not self.crashes and (self.dies_at is None or now < self.dies_at)


@dataclass
class LabNode:
    name: str
    site: str
    address: str
    roles: tuple[str, ...]
    packages: dict[str, Release] = field(default_factory=dict)
    units: dict[str, Unit] = field(default_factory=dict)
    instances: int = 0
    series: str = "noble"  # the Ubuntu series: which Cloud Archive pockets it can enable
    pocket: Release | None = None  # the OpenStack release its package sources point at
    lists: Release | None = None  # what its package lists knew at the last `apt-get update`
    files: dict[str, str] = field(default_factory=dict)  # files a command wrote (policy-rc.d)
    installed_at: dict[str, float] = field(default_factory=dict)  # package -> its last install
    # kolla: the release of the containers each play tag deployed that are not an OpenStack
    # role's (openvswitch, ovn-controller, common ...); a role's is its package's release
    kolla: dict[str, str] = field(default_factory=dict)

    @property
    def restarts_blocked(self) -> bool:
        """/usr/sbin/policy-rc.d forbids package scripts to restart services (exit 101)."""
        return "exit 101" in self.files.get("/usr/sbin/policy-rc.d", "")


@dataclass
class Database:
    service: str
    schema: Release  # the schema the service runs against
    expanded: Release | None = None  # expanded for this release, not yet contracted
    migrated: bool = False  # glance: data migrated after expand
    online_pending: int = 0  # online data migration batches still to run
    previous_pending: int = 0  # the previous release's online migrations (cinder rule)
    # tables a newer schema created that a restore left in place (a dump without
    # --add-drop-database drops and recreates only the tables it holds)
    stale: tuple[str, ...] = ()

    @property
    def supports(self) -> Release:
        return self.expanded or self.schema

    def tables(self) -> set[str]:
        """The tables the schema (and an expansion in progress) has: each release's
        migrations add one, named after it."""
        return {added_table(self.service, r) for r in CATALOGUE[: self.supports.index + 1]}


def added_table(service: str, release: Release) -> str:
    return f"{service}_{release.id.replace('.', '_')}_added"


@dataclass
class ServiceRecord:
    id: int
    host: str
    binary: str
    site: str
    disabled_reason: str | None = None

    @property
    def enabled(self) -> bool:
        return self.disabled_reason is None


COMPACT_EVERY = 5000  # logged changes between whole saves of the world


class World:
    """One lab cloud. Not thread-safe: the lab's servers all run on one event loop."""

    def __init__(self, inventory: Inventory, *, time_scale: float, faults: Faults, seed: int):
        self.inventory = inventory
        self.source = inventory.upgrade.source
        self.target = inventory.upgrade.target
        self.time_scale = time_scale
        self.faults = faults
        self.rng = random.Random(seed)
        self.persist_path: Path | None = None  # where save() keeps the world between runs
        # set (to 0.0): sleeps advance this clock by their nominal seconds instead of waiting,
        # so a recorded run has realistic, reproducible step durations (tests/sample_run.py)
        self.virtual_time: float | None = None
        self._wall_offset: float | None = None
        self._saved_once = False
        self._log_lines = 0  # changes logged since the last whole save
        self.running = 0  # commands executing now (a terminated command stops counting)
        self.peak_running = 0
        self.nodes: dict[str, LabNode] = {}
        self.by_address: dict[str, LabNode] = {}
        self.databases: dict[tuple[str, str], Database] = {}
        self.services: list[ServiceRecord] = []
        self.jobs: dict[str, LabJobs] = {}  # node -> its remote jobs (never saved)
        # sites whose MySQL was told SET GLOBAL log_bin_trust_function_creators=1 (not saved:
        # a SET GLOBAL is lost when the server restarts)
        self.trusts_function_creators: set[str] = set()
        self.identity_site = inventory.identity_site
        # the oldest release any unit has run: a restart checks for units two releases behind
        # only when one can exist (else a thousand restarts would each walk a thousand nodes)
        self.code_floor = self.source.index
        self._service_nodes: dict[tuple[str, str], list[LabNode]] = {}
        self._at_site: tuple[int, int, dict[str, tuple[list[LabNode], list[ServiceRecord]]]] = (
            -1,
            -1,
            {},
        )
        series = {site: found[0] for site, found in site_series(inventory.spec).items()}
        for node in inventory.nodes:
            lab_node = LabNode(node.name, node.site, node.address, node.roles)
            lab_node.series = series.get(node.site, "noble")
            lab_node.pocket = lab_node.lists = self.source
            for role in node.roles:
                spec = ROLES.get(role)
                if spec is None:
                    continue
                lab_node.packages[APT.package(role)] = self.source
                lab_node.units[APT.unit(role)] = Unit(APT.unit(role), self.source)
                key = self.db_key(node.site, spec.service)
                if key not in self.databases and spec.service != "horizon":
                    self.databases[key] = Database(spec.service, self.source)
                if role in (
                    "nova-compute",
                    "nova-conductor",
                    "nova-scheduler",
                    "cinder-volume",
                    "cinder-scheduler",
                    "cinder-backup",
                ) or role in (
                    "neutron-l2-agent",
                    "neutron-l3-agent",
                    "neutron-dhcp-agent",
                    "neutron-metadata-agent",
                ):
                    binary = APT.package(role)
                    self.services.append(
                        ServiceRecord(len(self.services) + 1, node.name, binary, node.site)
                    )
            if node.has("nova-compute"):
                lab_node.instances = 2 + self.rng.randrange(6)
            if any(ROLES[r].service == "nova" for r in node.roles if r in ROLES):
                # as the operators (or kolla, or openstack-ansible) configured it; the fault
                # unpinned:NODE leaves it as Ubuntu's package ships it, with no [upgrade_levels]
                pin = "" if faults.unpinned(node.name) else "\n[upgrade_levels]\ncompute = auto\n"
                lab_node.files["/etc/nova/nova.conf"] = f"[DEFAULT]\nmy_ip = {node.address}\n{pin}"
            self.nodes[node.name] = lab_node
            self.by_address[node.address] = lab_node
        self._add_unlisted(faults.unlisted)
        self._records = {(r.site, r.host, r.binary): r for r in self.services}
        method(inventory.method).lab_seed(self)  # what the method's hosts hold before any run
        for db in self.databases.values():
            if db.service == "cinder":
                db.previous_pending = faults.cinder_pending

    def _add_unlisted(self, unlisted: list[tuple[str, str, str]]) -> None:
        """The fault unlisted:SITE:HOST:BINARY: a service the site's APIs list, running the
        source's code on a host the inventory does not have (no SSH: nothing reaches it)
        or with a role the inventory does not give that host."""
        from rollgate.core.cloud_scope import ROLE_OF_BINARY

        for site, host, binary in unlisted:
            role = ROLE_OF_BINARY[binary]
            node = self.nodes.get(host)
            if node is None:
                node = self.nodes[host] = LabNode(host, site, "", ())
                node.pocket = node.lists = self.source
            if role not in node.roles:
                node.roles = (*node.roles, role)
            node.packages.setdefault(APT.package(role), self.source)
            node.units.setdefault(APT.unit(role), Unit(APT.unit(role), self.source))
            if not any(r.host == host and r.binary == binary for r in self.services):
                self.services.append(ServiceRecord(len(self.services) + 1, host, binary, site))
            if role == "nova-compute" and not node.instances:
                node.instances = 1

    # ---------------------------------------------------------------- time

    def now(self) -> float:
        """The lab's clock: the virtual one in a recorded run, else the event loop's."""
        if self.virtual_time is not None:
            return self.virtual_time
        return asyncio.get_running_loop().time()

    def wall(self, moment: float) -> float:
        """A loop time as wall-clock seconds, by one fixed offset (so a heartbeat's stamp
        reads the same at every call)."""
        if self._wall_offset is None:
            import time

            self._wall_offset = time.time() - self.now()
        return moment + self._wall_offset

    async def poll(self) -> None:
        """The pause between two looks at something awaited (a heartbeat, an API): a tick
        of the virtual clock in a recorded run, else a moment of the lab's time."""
        if self.virtual_time is not None:
            self.virtual_time += 1.0
            await asyncio.sleep(0)
            return
        await asyncio.sleep(max(0.01, self.time_scale))

    async def sleep(self, kind: str, node: str | None = None, factor: float = 1.0) -> None:
        if self.virtual_time is not None:  # a recorded run: the nominal time, not waited for
            self.virtual_time += DURATIONS[kind] * factor
            await asyncio.sleep(0)
            return
        seconds = DURATIONS[kind] * factor * self.time_scale
        if node is not None:
            seconds *= self.faults.slowness(node)
        if seconds > 0:
            await asyncio.sleep(seconds * (0.8 + 0.4 * self.rng.random()))

    # ---------------------------------------------------------------- lookups

    def db_key(self, site: str, service: str) -> tuple[str, str]:
        return (self.identity_site if service == "keystone" else site, service)

    def database(self, node: LabNode, service: str) -> Database:
        return self.databases[self.db_key(node.site, service)]

    def service_nodes(self, site: str, service: str) -> list[LabNode]:
        """The nodes of `site` with a role of `service` (the world's nodes and their roles
        never change: each list is built once)."""
        site = self.identity_site if service == "keystone" else site
        found = self._service_nodes.get((site, service))
        if found is None:
            found = self._service_nodes[(site, service)] = [
                n
                for n in self.nodes.values()
                if n.site == site
                and any(ROLES[r].service == service for r in n.roles if r in ROLES)
            ]
        return found

    def site_nodes(self, site: str) -> list[LabNode]:
        """The world's nodes at `site` (a status poll of one site of ten asks this each time:
        walking the other nine sites' nodes made polling grow with the square of the sites)."""
        return self._site_index().get(site, ([], []))[0]

    def site_services(self, site: str) -> list[ServiceRecord]:
        """The service records `site`'s APIs list."""
        return self._site_index().get(site, ([], []))[1]

    def _site_index(self) -> dict[str, tuple[list[LabNode], list[ServiceRecord]]]:
        nodes, services, index = self._at_site
        if nodes != len(self.nodes) or services != len(self.services):  # built, or grown
            index = {}
            for node in self.nodes.values():
                index.setdefault(node.site, ([], []))[0].append(node)
            for record in self.services:
                index.setdefault(record.site, ([], []))[1].append(record)
            self._at_site = (len(self.nodes), len(self.services), index)
        return index

    def runs(self, unit: Unit, release: Release) -> None:
        """`unit`'s process now runs `release`'s code."""
        unit.code = release
        self.code_floor = min(self.code_floor, release.index)

    def unit_up(self, node: LabNode, unit: str) -> bool:
        u = node.units.get(unit)
        now = self.now()
        return u is not None and u.alive(now) and now >= u.down_until

    def last_report(self, node: LabNode, unit: str) -> float | None:
        """When the unit's service last wrote its heartbeat (loop time): every report
        interval while its process runs, frozen when it stops or crashes."""
        u = node.units.get(unit)
        if u is None:
            return None
        now = self.now()
        if u.dies_at is not None and u.active and not u.crashes and u.down_until <= u.dies_at:
            now = min(now, u.dies_at)  # it reported until it died
        elif not self.unit_up(node, unit):
            return u.last_report
        if now < u.down_until:
            return u.last_report
        interval = DURATIONS["report-interval"] * self.time_scale
        if interval <= 0:
            return now
        return u.down_until + ((now - u.down_until) // interval) * interval

    def stop_unit(self, node: LabNode, unit: str) -> None:
        """The unit's process ends: its last heartbeat stays what it was."""
        u = node.units[unit]
        u.last_report = self.last_report(node, unit)
        u.active = False

    def installed(self, node: LabNode, service: str) -> Release | None:
        releases = [
            node.packages[APT.package(r)]
            for r in node.roles
            if r in ROLES and ROLES[r].service == service
        ]
        return max(releases, key=lambda r: r.index) if releases else None

    def inventory_databases(self, service: str) -> list[str]:
        """The MySQL databases a service keeps (its recipe's `databases`)."""
        from rollgate.core.recipes import load_recipe

        return list(load_recipe(self.inventory.method).databases.get(service, [service]))

    def refuses_triggers(self, site: str) -> bool:
        """The site's MySQL logs binary and does not trust function creators: creating a
        trigger needs SUPER, which a service's database user does not have."""
        return self.faults.binary_logging(site) and site not in self.trusts_function_creators

    def record(self, site: str, host: str, binary: str) -> ServiceRecord | None:
        return self._records.get((site, host, binary))

    def record_report(self, record: ServiceRecord) -> float | None:
        """The service record's updated_at (loop time): its unit's last heartbeat."""
        return self.last_report(self.nodes[record.host], record.binary)

    def record_state(self, record: ServiceRecord) -> str:
        """up while the last heartbeat is at most service_down_time old, as nova and neutron
        decide it: a service that just died still reads up for up to a minute."""
        if self.unit_up(self.nodes[record.host], record.binary):
            return "up"  # its process runs and reports every interval
        last = self.record_report(record)
        limit = DURATIONS["service-down-time"] * self.time_scale
        return "up" if last is not None and self.now() - last <= limit else "down"

    def record_version(self, record: ServiceRecord) -> Release:
        node = self.nodes[record.host]
        return node.units[record.binary].code if record.binary in node.units else self.source

    def oldest_compute(self, site: str) -> Release | None:
        computes = [
            n.units["nova-compute"].code
            for n in self.nodes.values()
            if n.site == site and "nova-compute" in n.units
        ]
        return min(computes, key=lambda r: r.index) if computes else None

    def release_after(self, release: Release) -> Release:
        return CATALOGUE[min(release.index + 1, len(CATALOGUE) - 1)]

    # ---------------------------------------------------------------- what the cloud looks like

    def all_upgraded(self) -> bool:
        return all(rel == self.target for n in self.nodes.values() for rel in n.packages.values())

    # ---------------------------------------------------------------- persistence

    def snapshot(self) -> dict[str, Any]:
        """What a real cloud would remember across a console crash."""
        return {
            "nodes": {n.name: self._node_snapshot(n) for n in self.nodes.values()},
            "databases": self._databases_snapshot(),
            "services": {str(r.id): r.disabled_reason for r in self.services},
        }

    @staticmethod
    def _node_snapshot(node: LabNode) -> dict[str, Any]:
        return {
            "packages": {p: r.id for p, r in node.packages.items()},
            "units": {u.name: [u.code.id, u.active] for u in node.units.values()},
            "pocket": node.pocket.id if node.pocket else None,
            "lists": node.lists.id if node.lists else None,
            "files": dict(node.files),
            "kolla": dict(node.kolla),
        }

    def _databases_snapshot(self) -> list[list[Any]]:
        return [
            [
                site,
                svc,
                db.schema.id,
                db.expanded.id if db.expanded else None,
                db.migrated,
                db.online_pending,
                db.previous_pending,
                list(db.stale),
            ]
            for (site, svc), db in self.databases.items()
        ]

    def restore(self, data: dict[str, Any]) -> None:
        by_id = {r.id: r for r in CATALOGUE}
        for name, node in data["nodes"].items():
            if name in self.nodes:  # a host of a fault no longer given is not restored
                self._restore_node(self.nodes[name], node, by_id)
        self._restore_databases(data["databases"], by_id)
        for record in self.services:
            record.disabled_reason = data["services"].get(str(record.id))

    def _restore_node(
        self, lab_node: LabNode, node: dict[str, Any], by_id: dict[str, Release]
    ) -> None:
        lab_node.packages = {p: find_release(r) for p, r in node["packages"].items()}
        for unit, (code, active) in node["units"].items():
            lab_node.units[unit] = Unit(unit, by_id[code], active)
            self.code_floor = min(self.code_floor, by_id[code].index)
        for name in ("pocket", "lists"):
            if node.get(name):
                setattr(lab_node, name, by_id[node[name]])
        lab_node.files = dict(node.get("files", {}))
        lab_node.kolla = dict(node.get("kolla", {}))

    def _restore_databases(self, rows: list[list[Any]], by_id: dict[str, Release]) -> None:
        for site, svc, schema, expanded, migrated, online, previous, *stale in rows:
            db = self.databases[(site, svc)]
            db.schema = by_id[schema]
            db.expanded = by_id[expanded] if expanded else None
            db.migrated, db.online_pending, db.previous_pending = migrated, online, previous
            db.stale = tuple(stale[0]) if stale else ()

    def save(self, node: LabNode | None = None, service: Any = None) -> None:
        """Keep what changed, so a lab restarted after a crash finds the cloud as it was.

        The first save (and every COMPACT_EVERY changes, and a save with nothing named) writes
        the whole world (world.json); in between each change appends one small line to
        world.log: the node a command ran on, the service record an API call changed, and
        the databases. Saving the whole world after every command cost minutes at 3,000
        computes; a line costs microseconds.
        """
        if self.persist_path is None:
            return
        log = self.persist_path.with_suffix(".log")
        if (
            (node is None and service is None)
            or not self._saved_once
            or (self._log_lines >= COMPACT_EVERY)
        ):
            tmp = self.persist_path.with_suffix(".tmp")
            write_private(tmp, json.dumps(self.snapshot()))
            os.replace(tmp, self.persist_path)
            log.unlink(missing_ok=True)
            self._saved_once, self._log_lines = True, 0
            return
        change: dict[str, Any] = {"databases": self._databases_snapshot()}
        if node is not None:
            change["node"] = [node.name, self._node_snapshot(node)]
        if service is not None:
            change["service"] = [str(service.id), service.disabled_reason]
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, json.dumps(change).encode() + b"\n")
        finally:
            os.close(fd)
        self._log_lines += 1

    def restore_saved(self, saved: Path) -> None:
        """Restore world.json, then the changes logged after it (a torn last line skipped)."""
        self.restore(json.loads(saved.read_text()))
        log = saved.with_suffix(".log")
        if not log.is_file():
            return
        by_id = {r.id: r for r in CATALOGUE}
        records = {str(r.id): r for r in self.services}
        for line in log.read_text().splitlines():
            try:
                change = json.loads(line)
            except ValueError:
                continue  # cut short by a crash: the change before it stands
            if "node" in change:
                name, data = change["node"]
                self._restore_node(self.nodes[name], data, by_id)
            if "service" in change and change["service"][0] in records:
                records[change["service"][0]].disabled_reason = change["service"][1]
            self._restore_databases(change["databases"], by_id)
