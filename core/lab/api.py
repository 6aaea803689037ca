"""The lab's OpenStack API over HTTP on loopback: what openstacksdk needs, unmodified.

Identity v3 (password auth, a catalog with every site as a region, listing the services the
site runs), compute (os-services list and disable/enable in both the 2.53+ and the older
forms, servers by host, hypervisors), block-storage v3 services, network agents, and version
documents. Each API answers only while a process of its service runs at the site (503
otherwise), and its newest microversion is what the oldest running process's code announces
(core/upstream.py, read from each release's tree).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import yaml

from rollgate.core.lab.world import APT, World
from rollgate.core.releases import CATALOGUE, Release
from rollgate.core.upstream import newest_microversion

if TYPE_CHECKING:
    from rollgate.core.lab import Lab

PROJECT_ID = "0123456789abcdef0123456789abcdef"
USER_ID = "fedcba9876543210fedcba9876543210"

# service type -> the role whose processes answer it
API_ROLES = {
    "identity": "keystone",
    "image": "glance-api",
    "placement": "placement-api",
    "compute": "nova-api",
    "network": "neutron-server",
    "block-storage": "cinder-api",
    "volumev3": "cinder-api",
}
# microversioned service types -> the name core/upstream.py keeps the newest under
_FACTS = {"compute": "compute", "placement": "placement", "block-storage": "volume",
          "volumev3": "volume"}  # fmt: skip
_MIN = {"compute": "2.1", "placement": "1.0", "block-storage": "3.0", "volumev3": "3.0"}


def serving(world: World, site: str, kind: str) -> list[Release]:
    """The code each process that answers `kind` at `site` runs (empty: none runs)."""
    role = API_ROLES[kind]
    where = world.identity_site if kind == "identity" else site
    unit = APT.unit(role)
    return [
        n.units[unit].code
        for n in world.site_nodes(where)
        if role in n.roles and world.unit_up(n, unit)
    ]


def microversion(release: Release, kind: str) -> str:
    """The newest microversion `release`'s code announces (for a release Rollgate has no
    facts of, the newest it knows: the lab cannot know more)."""
    name = _FACTS[kind]
    found = newest_microversion(release.id, name)
    if found is None:
        known = [
            r for r in CATALOGUE if newest_microversion(r.id, name) and r.index < release.index
        ]
        found = newest_microversion(known[-1].id, name) if known else _MIN[kind]
    assert found is not None
    return found


def max_microversion(world: World, site: str, kind: str = "compute") -> str | None:
    """The API's newest microversion: that of the oldest process serving it at the site
    (behind a proxy, any of them may answer); None when none runs."""
    codes = serving(world, site, kind)
    if not codes:
        return None
    return microversion(min(codes, key=lambda r: r.index), kind)


# the lab API's path word -> the service type it answers
SERVICE_TYPES = {
    "compute": "compute",
    "volume": "block-storage",
    "network": "network",
    "image": "image",
    "placement": "placement",
}


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


def _stamp(moment: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(moment or time.time()))


class LabApi:
    def __init__(self, world: World, password: str):
        self.world = world
        self.password = password
        self.tokens: set[str] = set()
        self.base = ""
        self.regions = {s.name: s.region for s in world.inventory.sites}
        self.writers: set[asyncio.StreamWriter] = set()
        self.handlers: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None

    def close(self) -> None:
        """Stop listening and drop kept-alive client connections."""
        if self.server is not None:
            self.server.close()
        for writer in list(self.writers):
            writer.close()

    async def wait_closed(self) -> None:
        if self.handlers:  # closed writers end their handlers at the next read
            await asyncio.wait(self.handlers, timeout=2)
        if self.server is not None:
            await self.server.wait_closed()

    # ---------------------------------------------------------------- HTTP plumbing

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self.handlers.add(task)
            task.add_done_callback(self.handlers.discard)
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    break
                method, target, _ = request_line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0") or 0)
                body = await reader.readexactly(length) if length else b""
                path = [p for p in urlsplit(target).path.split("/") if p]
                if len(path) >= 2 and self.world.faults.api_hangs_at(path[0], path[1]):
                    await asyncio.Event().wait()  # a lab fault: taken, never answered
                delay = self.world.faults.api_delay(path[0]) if path else 0.0
                if delay > 0 and path[0] in self.regions:  # a lab fault: a slow API
                    await asyncio.sleep(delay)  # real seconds; other connections are served
                status, extra, payload = self.route(method, target, headers, body)
                data = json.dumps(payload).encode() if payload is not None else b""
                head = [
                    f"HTTP/1.1 {status} {'OK' if status < 400 else 'Error'}",
                    "Content-Type: application/json",
                    f"Content-Length: {len(data)}",
                    "Connection: keep-alive",
                ]
                head += [f"{k}: {v}" for k, v in extra.items()]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    def route(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        url = urlsplit(target)
        parts = [p for p in url.path.split("/") if p]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            payload = json.loads(body) if body else {}
            if parts[:1] == ["identity"]:
                return self.identity(method, parts[1:], payload)
            if headers.get("x-auth-token") not in self.tokens:
                raise ApiError(401, "The request you have made requires authentication.")
            site = parts[0] if parts else ""
            if site not in self.regions:
                raise ApiError(404, f"no site {site!r}")
            service, rest = parts[1], parts[2:]
            if service in ("compute", "volume", "network") and (
                site in self.world.faults.api_errors or "*" in self.world.faults.api_errors
            ):
                raise ApiError(503, "Service Unavailable (lab fault)")
            kind = SERVICE_TYPES.get(service)
            if kind is not None and not serving(self.world, site, kind):
                raise ApiError(503, f"Service Unavailable: no {API_ROLES[kind]} runs at {site}")
            handler = {
                "compute": self.compute,
                "volume": self.volume,
                "network": self.network,
                "placement": self.placement,
            }.get(service)
            if handler is None:
                return 200, {}, self.version_doc(site, service, rest)
            return handler(site, method, rest, query, payload)
        except ApiError as exc:
            return exc.status, {}, {"error": {"code": exc.status, "message": str(exc)}}
        except (KeyError, IndexError, ValueError) as exc:
            return 400, {}, {"error": {"code": 400, "message": f"bad request: {exc}"}}

    # ---------------------------------------------------------------- identity

    def identity(self, method: str, parts: list[str], payload: Any) -> tuple[int, dict, Any]:
        v3 = {
            "id": "v3.14",
            "status": "stable",
            "updated": "2023-03-01T00:00:00Z",
            "links": [{"rel": "self", "href": f"{self.base}/identity/v3/"}],
            "media-types": [
                {"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}
            ],
        }
        if not parts:
            return 300, {}, {"versions": {"values": [v3]}}
        if parts == ["v3"]:
            return 200, {}, {"version": v3}
        if parts == ["v3", "auth", "tokens"] and method == "POST":
            if not serving(self.world, self.world.identity_site, "identity"):
                raise ApiError(503, "Service Unavailable: no keystone runs")
            user = payload["auth"]["identity"]["password"]["user"]
            if user.get("password") != self.password:
                raise ApiError(401, "The request you have made requires authentication.")
            token = secrets.token_hex(16)
            self.tokens.add(token)
            return (
                201,
                {"X-Subject-Token": token},
                {
                    "token": {
                        "methods": ["password"],
                        "expires_at": _stamp(time.time() + 86400),
                        "issued_at": _stamp(),
                        "audit_ids": [secrets.token_hex(8)],
                        "user": {
                            "id": USER_ID,
                            "name": user.get("name", "admin"),
                            "domain": {"id": "default", "name": "Default"},
                            "password_expires_at": None,
                        },
                        "project": {
                            "id": PROJECT_ID,
                            "name": "admin",
                            "domain": {"id": "default", "name": "Default"},
                        },
                        "roles": [{"id": "r1", "name": "admin"}, {"id": "r2", "name": "member"}],
                        "is_domain": False,
                        "catalog": self.catalog(),
                    }
                },
            )
        if method == "GET" and parts[:1] == ["v3"] and len(parts) == 2:
            return self.identity_list(parts[1])
        raise ApiError(404, f"identity: no route for {method} {'/'.join(parts)}")

    def identity_list(self, what: str) -> tuple[int, dict, Any]:
        """Regions, services and endpoints as keystone lists them (from the catalog)."""
        catalog = self.catalog()
        if what == "regions":
            regions: list[dict[str, Any]] = [
                {"id": r, "description": "", "parent_region_id": None, "links": {}}
                for r in sorted(self.regions.values())
            ]
            return 200, {}, {"regions": regions, "links": {}}
        if what == "services":
            services = [{"id": e["id"], "type": e["type"], "name": e["name"], "enabled": True}
                        for e in catalog]  # fmt: skip
            return 200, {}, {"services": services, "links": {}}
        if what == "endpoints":
            endpoints = [
                {**ep, "service_id": e["id"], "enabled": True}
                for e in catalog
                for ep in e["endpoints"]
            ]
            return 200, {}, {"endpoints": endpoints, "links": {}}
        raise ApiError(404, f"identity: no route for GET v3/{what}")

    def catalog(self) -> list[dict[str, Any]]:
        """Identity in every region; each other service in the regions whose site runs it."""
        services = [
            ("compute", "nova", "compute/v2.1"),
            ("block-storage", "cinderv3", f"volume/v3/{PROJECT_ID}"),
            ("volumev3", "cinderv3", f"volume/v3/{PROJECT_ID}"),
            ("network", "neutron", "network"),
            ("image", "glance", "image"),
            ("placement", "placement", "placement"),
        ]
        runs = {(node.site, role) for node in self.world.inventory.nodes for role in node.roles}
        catalog = [
            {
                "type": "identity",
                "name": "keystone",
                "id": "identity",
                "endpoints": [
                    {
                        "id": f"identity-{r}",
                        "interface": "public",
                        "region": r,
                        "region_id": r,
                        "url": f"{self.base}/identity/v3",
                    }
                    for r in self.regions.values()
                ],
            }
        ]
        for kind, name, path in services:
            catalog.append(
                {
                    "type": kind,
                    "name": name,
                    "id": kind,
                    "endpoints": [
                        {
                            "id": f"{kind}-{site}",
                            "interface": "public",
                            "region": region,
                            "region_id": region,
                            "url": f"{self.base}/{site}/{path}",
                        }
                        for site, region in self.regions.items()
                        if (site, API_ROLES[kind]) in runs
                    ],
                }
            )
        return [entry for entry in catalog if entry["endpoints"]]

    # ---------------------------------------------------------------- compute

    def version_doc(self, site: str, service: str, rest: list[str]) -> Any:
        if service == "compute":
            version = {
                "id": "v2.1",
                "status": "CURRENT",
                "version": max_microversion(self.world, site, "compute"),
                "min_version": "2.1",
                "updated": "2013-07-23T11:33:21Z",
                "links": [{"rel": "self", "href": f"{self.base}/{site}/compute/v2.1/"}],
            }
            return {"version": version} if rest == ["v2.1"] else {"versions": [version]}
        href = f"{self.base}/{site}/{service}/"
        if service == "placement":  # placement's own form: max_version and min_version
            return {
                "versions": [
                    {
                        "id": "v1.0",
                        "status": "CURRENT",
                        "max_version": max_microversion(self.world, site, "placement"),
                        "min_version": "1.0",
                        "links": [{"rel": "self", "href": href}],
                    }
                ]
            }
        return {
            "versions": [
                {
                    "id": "v2.16" if service == "image" else "v1.0",
                    "status": "CURRENT",
                    "links": [{"rel": "self", "href": href}],
                }
            ]
        }

    def _record_json(self, record: Any, kind: str) -> dict[str, Any]:
        state = self.world.record_state(record)
        zone = (
            next((n.az for n in self.world.inventory.nodes if n.name == record.host), None)
            or "nova"
        )
        data = {
            "id": record.id,
            "binary": record.binary,
            "host": record.host,
            "zone": zone,
            "status": "enabled" if record.enabled else "disabled",
            "state": state,
            "updated_at": self._report_stamp(record),
            "disabled_reason": record.disabled_reason,
        }
        if kind == "compute":
            data["forced_down"] = False
        return data

    def _records(self, site: str, prefix: str, query: dict[str, str]) -> list[Any]:
        return [
            r
            for r in self.world.site_services(site)
            if r.binary.startswith(prefix)
            and query.get("host", r.host) == r.host
            and query.get("binary", r.binary) == r.binary
        ]

    def _set_status(self, record: Any, status: str, reason: str | None) -> None:
        record.disabled_reason = None if status == "enabled" else (reason or "disabled")
        self.world.save(service=record)

    def compute(
        self, site: str, method: str, rest: list[str], query: dict[str, str], payload: Any
    ) -> tuple[int, dict, Any]:
        if rest in ([], ["v2.1"]):
            return 200, {}, self.version_doc(site, "compute", rest)
        rest = rest[1:] if rest[0] == "v2.1" else rest
        if rest == ["os-services"] and method == "GET":
            return (
                200,
                {},
                {
                    "services": [
                        self._record_json(r, "compute") for r in self._records(site, "nova-", query)
                    ]
                },
            )
        if rest[:1] == ["os-services"] and method == "PUT":
            if rest[1] in ("disable", "disable-log-reason", "enable"):
                record = self._one(site, payload["host"], payload["binary"])
                status = "enabled" if rest[1] == "enable" else "disabled"
                self._set_status(record, status, payload.get("disabled_reason"))
                return (
                    200,
                    {},
                    {
                        "service": {
                            "host": record.host,
                            "binary": record.binary,
                            "status": status,
                            "disabled_reason": record.disabled_reason,
                        }
                    },
                )
            record = next(r for r in self.world.services if str(r.id) == rest[1])
            if "status" in payload:
                self._set_status(record, payload["status"], payload.get("disabled_reason"))
            return 200, {}, {"service": self._record_json(record, "compute")}
        if rest[:2] == ["servers", "detail"]:
            host = query.get("host") or query.get("compute_host")
            servers = []
            for node in self.world.nodes.values():
                if node.site == site and "nova-compute" in node.units and host in (None, node.name):
                    servers += [
                        {
                            "id": f"{node.name}-vm{i}",
                            "name": f"vm{i}",
                            "status": "ACTIVE",
                            "OS-EXT-SRV-ATTR:host": node.name,
                            "links": [],
                        }
                        for i in range(node.instances)
                    ]
            return 200, {}, {"servers": servers}
        if rest[:1] == ["os-hypervisors"]:
            hypervisors = [
                {
                    "id": i,
                    "hypervisor_hostname": n.name,
                    "host_ip": n.address or None,
                    "state": "up",
                    "status": "enabled",
                    "running_vms": n.instances,
                }
                for i, n in enumerate(self.world.nodes.values())
                if n.site == site and "nova-compute" in n.units
            ]
            return 200, {}, {"hypervisors": hypervisors}
        raise ApiError(404, f"compute: no route for {method} {'/'.join(rest)}")

    def placement(
        self, site: str, method: str, rest: list[str], query: dict[str, str], payload: Any
    ) -> tuple[int, dict, Any]:
        if not rest:
            return 200, {}, self.version_doc(site, "placement", rest)
        if rest == ["resource_providers"] and method == "GET":
            providers: list[dict[str, Any]] = [
                {"uuid": f"{i:08x}-0000-4000-8000-{i:012x}", "name": n.name, "generation": 1,
                 "parent_provider_uuid": None, "root_provider_uuid": f"{i:08x}-0000-4000-8000-"
                 f"{i:012x}", "links": []}
                for i, n in enumerate(self.world.nodes.values())
                if n.site == site and "nova-compute" in n.units
            ]  # fmt: skip
            return 200, {}, {"resource_providers": providers}
        raise ApiError(404, f"placement: no route for {method} {'/'.join(rest)}")

    def _one(self, site: str, host: str, binary: str) -> Any:
        record = self.world.record(site, host, binary)
        if record is None:
            raise ApiError(404, f"Service {binary} on host {host} not found.")
        return record

    def volume(
        self, site: str, method: str, rest: list[str], query: dict[str, str], payload: Any
    ) -> tuple[int, dict, Any]:
        if not rest or rest == ["v3"]:
            return (
                200,
                {},
                {
                    "versions": [
                        {
                            "id": "v3.0",
                            "status": "CURRENT",
                            "version": max_microversion(self.world, site, "block-storage"),
                            "min_version": "3.0",
                            "links": [{"rel": "self", "href": f"{self.base}/{site}/volume/v3/"}],
                        }
                    ]
                },
            )
        rest = rest[2:]  # v3/<project>
        if rest == ["os-services"] and method == "GET":
            return (
                200,
                {},
                {
                    "services": [
                        self._record_json(r, "volume")
                        for r in self._records(site, "cinder-", query)
                    ]
                },
            )
        if rest[:1] == ["os-services"] and method == "PUT":
            record = self._one(site, payload["host"], payload["binary"])
            status = "enabled" if rest[1] == "enable" else "disabled"
            self._set_status(record, status, payload.get("disabled_reason"))
            return (
                200,
                {},
                {
                    "host": record.host,
                    "binary": record.binary,
                    "status": status,
                    "disabled_reason": record.disabled_reason,
                },
            )
        raise ApiError(404, f"volume: no route for {method} {'/'.join(rest)}")

    def network(
        self, site: str, method: str, rest: list[str], query: dict[str, str], payload: Any
    ) -> tuple[int, dict, Any]:
        if not rest:
            return (
                200,
                {},
                {
                    "versions": [
                        {
                            "id": "v2.0",
                            "status": "CURRENT",
                            "links": [{"rel": "self", "href": f"{self.base}/{site}/network/v2.0/"}],
                        }
                    ]
                },
            )
        rest = rest[1:] if rest[0] == "v2.0" else rest
        agents = [
            r for r in self.world.services if r.site == site and r.binary.startswith("neutron-")
        ]
        if rest == ["agents"] and method == "GET":
            return (
                200,
                {},
                {
                    "agents": [
                        self._agent_json(r) for r in agents if query.get("host", r.host) == r.host
                    ]
                },
            )
        if rest[:1] == ["agents"] and method == "PUT":
            record = next(r for r in agents if str(r.id) == rest[1])
            up = payload["agent"].get("admin_state_up", True)
            self._set_status(record, "enabled" if up else "disabled", "admin state down")
            return 200, {}, {"agent": self._agent_json(record)}
        raise ApiError(404, f"network: no route for {method} {'/'.join(rest)}")

    def _agent_json(self, record: Any) -> dict[str, Any]:
        kind = {
            "neutron-openvswitch-agent": "Open vSwitch agent",
            "neutron-l3-agent": "L3 agent",
            "neutron-dhcp-agent": "DHCP agent",
            "neutron-metadata-agent": "Metadata agent",
        }.get(record.binary, record.binary)
        return {
            "id": str(record.id),
            "agent_type": kind,
            "binary": record.binary,
            "host": record.host,
            "alive": self.world.record_state(record) == "up",
            "admin_state_up": record.enabled,
            "availability_zone": None,
            "heartbeat_timestamp": self._report_stamp(record),
        }

    def _report_stamp(self, record: Any) -> str | None:
        """The record's last heartbeat as the API writes it (wall clock, microseconds)."""
        last = self.world.record_report(record)
        if last is None:
            return None
        wall = self.world.wall(last)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + f".{int(wall % 1 * 1e6):06d}"


async def serve_api(lab: Lab, base_dir: Path) -> Path:
    """Start the API on loopback and write a clouds.yaml (mode 0600) for it; return its path."""
    password = secrets.token_urlsafe(18)
    api = LabApi(lab.world, password)
    server = await asyncio.start_server(api.handle, host="127.0.0.1", port=0)
    port = server.sockets[0].getsockname()[1]
    api.base = f"http://127.0.0.1:{port}"
    api.server = server
    lab._servers.append(api)
    cloud = lab.inventory.sites[0].openstack.cloud or "rollgate-lab"
    clouds_yaml = base_dir / "clouds.yaml"
    clouds_yaml.touch(mode=0o600)
    clouds_yaml.chmod(0o600)
    clouds_yaml.write_text(
        yaml.safe_dump(
            {
                "clouds": {
                    cloud: {
                        "auth": {
                            "auth_url": f"{api.base}/identity/v3",
                            "username": "admin",
                            "password": password,
                            "project_name": "admin",
                            "user_domain_name": "Default",
                            "project_domain_name": "Default",
                        },
                        "identity_api_version": 3,
                        "interface": "public",
                        "regions": [site.region for site in lab.inventory.sites],
                    }
                }
            }
        )
    )
    return clouds_yaml
