"""Where the acceptance cloud lives and who runs what: nodes, addresses, ports, programs.

The inventory (inventory.yaml) names the same nodes and addresses; a default-suite test
checks that the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
STATE = Path("/var/tmp/rollgate-acceptance")  # this run's cloud; wiped at the start
CACHE = Path("/var/cache/rollgate-acceptance")  # the releases' virtualenvs, kept between runs
VENVS = CACHE / "venvs"
CONSTRAINTS = CACHE / "constraints"  # copied from constraints/ (the nodes read them)
SOURCE, TARGET = "2025.2", "2026.1"
SKIP_LEVEL_SOURCE = "2025.1"  # `--skip-level`: the SLURP before TARGET, two releases back
SSH_PORT = 2200
DB_ADDRESS = "127.0.9.5"
RABBIT_PORT = 5672
EPMD_PORT = 4371
RABBIT_DIST_PORT = 25673
MEMCACHED_PORT = 11211

# per-node directories bind-mounted over the machine's, so each node has its own /etc/nova...
SERVICES = ("keystone", "glance", "placement", "nova", "neutron", "cinder")
NODE_DIRS = (
    *(f"/etc/{s}" for s in SERVICES),
    *(f"/var/lib/{s}" for s in SERVICES),
    *(f"/var/log/{s}" for s in SERVICES),
    "/etc/supervisor",
    "/run/supervisor",
    "/openstack",
    "/root",
    "/var/backups/rollgate",
    "/var/tmp/rollgate-jobs",
)


@dataclass(frozen=True)
class Program:
    """A supervisor program: what it runs, through its own link /openstack/active/NAME to
    the virtualenv it runs from (moved at its restart: docs/venv-method.md)."""

    name: str
    dist: str  # the PyPI distribution whose version is its service's
    command: str
    port: int = 0  # an API's port (0: no port)


def _api(name: str, dist: str, port: int) -> Program:
    """An API under gunicorn, configured by the gunicorn.conf.py in its working directory
    (configs.py): oslo.config reads the program's arguments as its own, so it gets none."""
    return Program(name, dist, f"/openstack/active/{name}/bin/gunicorn", port)


# an API's WSGI application (each project's wsgi module)
WSGI_APPS = {
    "keystone": "keystone.wsgi.api:application",
    "glance-api": "glance.wsgi.api:application",
    "placement-api": "placement.wsgi.api:application",
    "nova-api": "nova.wsgi.osapi_compute:application",
    "cinder-api": "cinder.wsgi.api:application",
    "neutron-server": "neutron.wsgi.api:application",
}


# Two regions sharing one keystone (its own node, at dc1, the identity site); each region its
# own database server, controller and four computes; RabbitMQ (a vhost per region) and
# memcached on dc1's database node
SITES = {"dc1": "RegionOne", "dc2": "RegionTwo"}  # site -> region
KEYSTONE = "127.0.9.10"
DB_NODES = {"dc1": ("db01", DB_ADDRESS), "dc2": ("db02", "127.0.9.6")}
CONTROLLERS = {"dc1": ("ctl01", "127.0.9.11"), "dc2": ("ctl02", "127.0.9.12")}
CONTROLLER = CONTROLLERS["dc1"][1]
COMPUTES_OF = {
    "dc1": {f"cmp0{i}": f"127.0.9.2{i}" for i in range(1, 5)},
    "dc2": {f"cmp0{i}": f"127.0.9.2{i}" for i in range(5, 9)},
}
COMPUTES = {**COMPUTES_OF["dc1"], **COMPUTES_OF["dc2"]}
NODES = {
    **{name: address for name, address in DB_NODES.values()},
    "key01": KEYSTONE,
    **{name: address for name, address in CONTROLLERS.values()},
    **COMPUTES,
}
SITE_OF = {
    "key01": "dc1",
    **{DB_NODES[s][0]: s for s in SITES},
    **{CONTROLLERS[s][0]: s for s in SITES},
    **{c: s for s in SITES for c in COMPUTES_OF[s]},
}


def region_of(node: str) -> str:
    return SITES[SITE_OF[node]]


def controller_of(node: str) -> str:
    """The address of the controller of the node's region."""
    return CONTROLLERS[SITE_OF[node]][1]


def db_of(node: str) -> str:
    """The address of the database server of the node's region (keystone's: dc1's)."""
    return DB_NODES[SITE_OF[node]][1]


def _controller_programs() -> tuple[Program, ...]:
    return (
        _api("glance-api", "glance", 9292),
        _api("placement-api", "openstack-placement", 8778),
        _api("neutron-server", "neutron", 9696),
        _api("nova-api", "nova", 8774),
        Program("nova-conductor", "nova", "/openstack/active/nova-conductor/bin/nova-conductor"),
        Program("nova-scheduler", "nova", "/openstack/active/nova-scheduler/bin/nova-scheduler"),
        _api("cinder-api", "cinder", 8776),
        Program(
            "cinder-scheduler", "cinder", "/openstack/active/cinder-scheduler/bin/cinder-scheduler"
        ),
        Program("cinder-volume", "cinder", "/openstack/active/cinder-volume/bin/cinder-volume"),
    )


# what each node runs, in the order they start
PROGRAMS: dict[str, tuple[Program, ...]] = {
    **{name: () for name, _ in DB_NODES.values()},
    "key01": (_api("keystone", "keystone", 5000),),
    **{name: _controller_programs() for name, _ in CONTROLLERS.values()},
    **{
        name: (Program("nova-compute", "nova", "/openstack/active/nova-compute/bin/nova-compute"),)
        for name in COMPUTES
    },
}
IDENTITY_URL = f"http://{KEYSTONE}:5000/v3"


def endpoints(site: str) -> dict[str, tuple[str, str]]:
    """The region's catalog: service type -> (name, URL); identity is keystone's, shared."""
    ctl = CONTROLLERS[site][1]
    return {
        "identity": ("keystone", IDENTITY_URL),
        "image": ("glance", f"http://{ctl}:9292"),
        "placement": ("placement", f"http://{ctl}:8778"),
        "compute": ("nova", f"http://{ctl}:8774/v2.1"),
        "network": ("neutron", f"http://{ctl}:9696"),
        "block-storage": ("cinderv3", f"http://{ctl}:8776/v3"),
    }


ENDPOINTS = endpoints("dc1")


def use_source(release: str) -> None:
    """The release the cloud is built on (`--skip-level`: SKIP_LEVEL_SOURCE); read it as
    `layout.SOURCE` at the time of use."""
    global SOURCE
    SOURCE = release
