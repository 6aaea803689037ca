"""Release N on the acceptance cloud, as an installer would leave it: each node's services
linked to N's virtualenv, schemas synced, keystone bootstrapped with its catalog, every
program started under supervisor, the computes discovered."""

from __future__ import annotations

import time
from typing import Any

from tests.acceptance import layout
from tests.acceptance.cloud import Cloud, SetupError, wait_port
from tests.acceptance.layout import (
    COMPUTES_OF,
    CONTROLLERS,
    DB_NODES,
    IDENTITY_URL,
    NODES,
    PROGRAMS,
    SITES,
    VENVS,
    endpoints,
)

SERVICE_USERS = ("glance", "placement", "nova", "neutron", "cinder")


def link(cloud: Cloud, node: str, release: str) -> None:
    """Each program's own link to the release's virtualenv."""
    links = " && ".join(
        f"ln -sfn {VENVS / release} /openstack/active/{p.name}" for p in PROGRAMS[node]
    )
    if links:
        cloud.on(node, f"mkdir -p /openstack/active && {links}")


def bin_(tool: str) -> str:
    return f"{VENVS / layout.SOURCE}/bin/{tool}"


def sync_schemas(cloud: Cloud) -> None:
    """keystone once (its own node, the shared identity), then each region's services on its
    controller, against its own database server: its own cells."""
    for command in (
        f"{bin_('keystone-manage')} db_sync",
        f"{bin_('keystone-manage')} fernet_setup --keystone-user root --keystone-group root",
        f"{bin_('keystone-manage')} credential_setup --keystone-user root --keystone-group root",
        f"{bin_('keystone-manage')} bootstrap --bootstrap-password {cloud.secrets.admin} "
        f"--bootstrap-admin-url {IDENTITY_URL} --bootstrap-internal-url {IDENTITY_URL} "
        f"--bootstrap-public-url {IDENTITY_URL} --bootstrap-region-id {SITES['dc1']}",
    ):
        cloud.on("key01", command)
    for site in SITES:
        ctl = CONTROLLERS[site][0]
        cell0 = f"mysql+pymysql://openstack:{cloud.secrets.db}@{DB_NODES[site][1]}/nova_cell0"
        for command in (
            f"{bin_('glance-manage')} db_sync",
            f"{bin_('placement-manage')} db sync",
            f"{bin_('nova-manage')} api_db sync",
            f"{bin_('nova-manage')} cell_v2 map_cell0 --database_connection {cell0}",
            f"{bin_('nova-manage')} cell_v2 create_cell --name cell1",
            f"{bin_('nova-manage')} db sync",
            f"{bin_('cinder-manage')} db sync",
            f"{bin_('neutron-db-manage')} --config-file /etc/neutron/neutron.conf "
            "--config-file /etc/neutron/plugins/ml2/ml2_conf.ini upgrade heads",
        ):
            cloud.on(ctl, command)


def start(cloud: Cloud, node: str, names: list[str] | None = None) -> None:
    for program in PROGRAMS[node]:
        if names is not None and program.name not in names:
            continue
        cloud.on(node, f"supervisorctl start {program.name}")
        if program.port:
            wait_port(
                NODES[node],
                program.port,
                90,
                program.name,
                cloud.node_dir(node) / f"var/log/{program.name.split('-')[0]}",
            )


def register_catalog(conn: Any, secrets: Any) -> None:
    """The service project, each service's user (admin and service roles), the second
    region, and each region's catalog: its services' endpoints, and keystone's (shared)."""
    service = conn.identity.create_project(name="service", domain_id="default")
    admin = conn.identity.find_role("admin")
    service_role = conn.identity.find_role("service") or conn.identity.create_role(name="service")
    for name in SERVICE_USERS:
        user = conn.identity.create_user(
            name=name,
            password=secrets.service,
            domain_id="default",
            default_project_id=service.id,
        )
        for role in (admin, service_role):
            conn.identity.assign_project_role_to_user(service, user, role)
    created: dict[str, Any] = {}
    identity = next(s for s in conn.identity.services() if s.type == "identity")
    for site, region in SITES.items():
        if site != "dc1":  # keystone's bootstrap made the first region and its endpoints
            conn.identity.create_region(id=region)
            for interface in ("public", "internal"):
                conn.identity.create_endpoint(service_id=identity.id, interface=interface,
                                              url=IDENTITY_URL, region_id=region)  # fmt: skip
        for kind, (name, url) in endpoints(site).items():
            if kind == "identity":
                continue
            if kind not in created:
                created[kind] = conn.identity.create_service(name=name, type=kind)
            for interface in ("public", "internal"):
                conn.identity.create_endpoint(
                    service_id=created[kind].id, interface=interface, url=url, region_id=region
                )


def discover_computes(cloud: Cloud, conns: dict[str, Any], timeout: float = 180) -> None:
    """Each region's computes up in its nova and in its placement."""
    for site, conn in conns.items():
        want = set(COMPUTES_OF[site])
        deadline = time.monotonic() + timeout
        while True:
            cloud.on(CONTROLLERS[site][0], f"{bin_('nova-manage')} cell_v2 discover_hosts")
            services = conn.compute.services(binary="nova-compute")
            up = {s.host for s in services if s.state == "up"}
            providers = {p.name for p in conn.placement.resource_providers()}
            if want <= up and want <= providers:
                break
            if time.monotonic() > deadline:
                raise SetupError(
                    f"{SITES[site]}: computes up: {sorted(up)}, in placement: "
                    f"{sorted(providers)}; see the nodes' /var/log/nova"
                )
            time.sleep(2)


def admin_cloud(secrets: Any) -> dict[str, Any]:
    """clouds.yaml's entry for the admin (the inventory's openstack.cloud)."""
    return {
        "auth": {
            "auth_url": IDENTITY_URL,
            "username": "admin",
            "password": secrets.admin,
            "project_name": "admin",
            "user_domain_name": "Default",
            "project_domain_name": "Default",
        },
        "regions": list(SITES.values()),
        "identity_api_version": 3,
    }
