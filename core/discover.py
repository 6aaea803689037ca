"""`rollgate discover`: read a cloud's regions, endpoints, services, agents and resource
providers from its APIs (openstacksdk) and write them as an inventory skeleton."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

import yaml

from rollgate.core.cloud_scope import ROLE_OF_BINARY
from rollgate.core.errors import UserError
from rollgate.core.importers import slug
from rollgate.core.releases import CATALOGUE
from rollgate.core.upstream import newest_microversion

TODO = "TODO"  # what the APIs cannot say: the operator fills it in


@dataclass
class RegionFound:
    """One region as its APIs list it."""

    name: str
    endpoints: dict[str, str] = field(default_factory=dict)  # service type -> public URL
    services: dict[str, set[str]] = field(default_factory=dict)  # host -> binaries
    addresses: dict[str, str] = field(default_factory=dict)  # hypervisor host -> host_ip
    providers: list[str] = field(default_factory=list)  # placement resource providers
    compute_microversion: str | None = None
    unreadable: list[str] = field(default_factory=list)  # "compute: 503 ..." per API


@dataclass
class CloudFound:
    cloud: str
    regions: list[RegionFound]
    identity_region: str | None  # the region whose identity endpoint the others share


def connect(cloud: str | None, clouds_yaml: str | None, region: str | None = None) -> Any:
    """An openstacksdk connection, or one line naming what to fix."""
    import openstack
    from openstack import config as os_config

    try:
        config = os_config.OpenStackConfig(config_files=[clouds_yaml] if clouds_yaml else None)
        found = config.get_one(cloud=cloud, region_name=region)
        return openstack.connection.Connection(config=found)
    except Exception as exc:  # openstacksdk raises many kinds for bad configuration
        raise UserError(
            f"cannot use cloud {cloud!r}: {str(exc).splitlines()[0]}; give --os-cloud NAME "
            "(or OS_CLOUD) naming a cloud of clouds.yaml (OS_CLIENT_CONFIG_FILE)"
        ) from None


def _region(conn: Any, name: str, endpoints: dict[str, str]) -> RegionFound:
    found = RegionFound(name, endpoints)

    def add(host: str, binary: str) -> None:
        found.services.setdefault(host.split("@")[0], set()).add(binary)

    def read(api: str, call: Any) -> None:
        if api not in endpoints and not (api == "block-storage" and "volumev3" in endpoints):
            return
        try:
            call()
        except Exception as exc:  # one API not answering does not hide the others
            found.unreadable.append(f"{api}: {str(exc).splitlines()[0][:160]}")

    def compute() -> None:
        for svc in conn.compute.services():
            add(svc.host, svc.binary)
        for hv in conn.compute.hypervisors(details=True):
            if getattr(hv, "host_ip", None):
                found.addresses[hv.name] = hv.host_ip
        version = conn.compute.get_endpoint_data().max_microversion
        found.compute_microversion = f"{version[0]}.{version[1]}" if version else None

    def network() -> None:
        for agent in conn.network.agents():
            add(agent.host, agent.binary)

    def volume() -> None:
        for svc in conn.block_storage.services():
            add(svc.host, svc.binary)

    def placement() -> None:
        found.providers = sorted(rp.name for rp in conn.placement.resource_providers())

    read("compute", compute)
    read("network", network)
    read("block-storage", volume)
    read("placement", placement)
    return found


def discover(cloud: str | None, clouds_yaml: str | None) -> CloudFound:
    """Every region keystone lists, each read through its own APIs."""
    conn = connect(cloud, clouds_yaml)
    try:
        regions = sorted(r.id for r in conn.identity.regions())
        types = {s.id: s.type for s in conn.identity.services()}
        endpoints: dict[str, dict[str, str]] = {}
        for ep in conn.identity.endpoints(interface="public"):
            endpoints.setdefault(ep.region_id, {})[types.get(ep.service_id, "?")] = ep.url
    except Exception as exc:
        raise UserError(
            f"cannot list the regions and endpoints of cloud {cloud!r}: "
            f"{str(exc).splitlines()[0][:200]}; discover needs an admin login to keystone"
        ) from None
    found = []
    for name in regions or sorted(endpoints):
        in_region = connect(cloud, clouds_yaml, name)
        found.append(_region(in_region, name, endpoints.get(name, {})))
    identity = {r.endpoints.get("identity") for r in found}
    shared = next((r.name for r in found if r.endpoints.get("identity")), None)
    return CloudFound(cloud or "cloud", found, shared if len(identity) == 1 else None)


def release_of(microversion: str | None) -> str | None:
    """The release whose compute API announces this newest microversion, if Rollgate knows."""
    for release in CATALOGUE:
        if microversion and newest_microversion(release.id, "compute") == microversion:
            return release.id
    return None


def skeleton(found: CloudFound) -> str:
    """The cloud as an inventory: every host with the roles its services show; what the APIs
    cannot say (SSH addresses, API roles of controllers, the method) marked TODO."""
    sites: dict[str, Any] = {}
    notes: list[str] = []
    releases = {release_of(r.compute_microversion) for r in found.regions} - {None}
    for region in found.regions:
        nodes = []
        for host in sorted(region.services):
            roles = sorted(
                {ROLE_OF_BINARY[b] for b in region.services[host] if b in ROLE_OF_BINARY}
            )
            others = sorted(b for b in region.services[host] if b not in ROLE_OF_BINARY)
            if others:
                notes.append(f"{region.name}/{host} runs {', '.join(others)}: no Rollgate role; "
                             "declare it under unmanaged: or leave it out")  # fmt: skip
            if not roles:
                continue
            if not any(r == "nova-compute" for r in roles):
                notes.append(f"{region.name}/{host}: add the API roles it serves (the APIs do "
                             "not list API services by host)")  # fmt: skip
            nodes.append(
                {"name": host, "address": region.addresses.get(host, TODO), "roles": roles}
            )
        missing = sorted(set(region.providers) - set(region.services))
        if missing:
            notes.append(f"{region.name}: placement has resource providers without a compute "
                         f"service: {', '.join(missing)}")  # fmt: skip
        notes += [f"{region.name}: could not read {u}" for u in region.unreadable]
        if nodes:
            sites[slug(region.name, "site")] = {
                "region": region.name,
                "openstack": {"cloud": found.cloud},
                "nodes": nodes,
            }
    identity = slug(found.identity_region, "site") if found.identity_region else TODO
    if identity != TODO and identity not in sites:  # keystone's hosts are not listed by host
        sites[identity] = {
            "region": found.identity_region,
            "openstack": {"cloud": found.cloud},
            "nodes": [{"name": TODO, "address": TODO, "roles": ["keystone"]}],
        }
        notes.append(f"{found.identity_region}: name the hosts that run keystone")
    inventory = {
        "cloud": slug(found.cloud, "cloud"),
        "upgrade": {"from": releases.pop() if len(releases) == 1 else TODO, "to": TODO},
        "method": TODO,
        "ssh": {"user": TODO, "become": True},
        "shared": {"identity": {"site": identity}},
        "sites": sites,
    }
    day = datetime.date.today().isoformat()
    head = [
        f"# Discovered from cloud {found.cloud} on {day} by `rollgate discover`.",
        f"# {sum(len(s['nodes']) for s in sites.values())} hosts in {len(sites)} regions. "
        "Fill in every TODO: the APIs do not say",
        "# SSH addresses (computes' come from the hypervisors' host_ip), the deployment",
        "# method, the target release, or which controllers serve the APIs.",
        *(f"# - {n}" for n in notes),
    ]
    return (
        "\n".join(head)
        + "\n"
        + yaml.safe_dump(inventory, sort_keys=False, width=100, default_flow_style=None)
    )
