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


CONTROLLER = "127.0.9.11"
COMPUTES = {"cmp01": "127.0.9.21", "cmp02": "127.0.9.22"}
NODES = {"db01": DB_ADDRESS, "ctl01": CONTROLLER, **COMPUTES}

# what each node runs, in the order they start
PROGRAMS: dict[str, tuple[Program, ...]] = {
    "db01": (),
    "ctl01": (
        _api("keystone", "keystone", 5000),
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
    ),
    **{
        name: (Program("nova-compute", "nova", "/openstack/active/nova-compute/bin/nova-compute"),)
        for name in COMPUTES
    },
}
ENDPOINTS = {  # service type -> (name, URL)
    "identity": ("keystone", f"http://{CONTROLLER}:5000/v3"),
    "image": ("glance", f"http://{CONTROLLER}:9292"),
    "placement": ("placement", f"http://{CONTROLLER}:8778"),
    "compute": ("nova", f"http://{CONTROLLER}:8774/v2.1"),
    "network": ("neutron", f"http://{CONTROLLER}:9696"),
    "block-storage": ("cinderv3", f"http://{CONTROLLER}:8776/v3"),
}
