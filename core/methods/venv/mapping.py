"""The virtualenv method's names: the PyPI distribution that carries each role's service and
the supervisor program (or systemd unit) that runs it."""

from __future__ import annotations

# role -> the PyPI distribution whose version is the service's (placement's is not its name)
DISTRIBUTIONS: dict[str, str] = {
    "keystone": "keystone",
    "glance-api": "glance",
    "placement-api": "openstack-placement",
    "nova-api": "nova",
    "nova-conductor": "nova",
    "nova-scheduler": "nova",
    "nova-compute": "nova",
    "neutron-server": "neutron",
    "cinder-api": "cinder",
    "cinder-scheduler": "cinder",
    "cinder-volume": "cinder",
    "cinder-backup": "cinder",
}

# role -> the program that runs it: the role's own name (OpenStack-Ansible's unit names)
PROGRAMS: dict[str, str] = {role: role for role in DISTRIBUTIONS}

# What every release's virtualenv carries besides the services: the WSGI server the APIs run
# under (recent releases ship no API scripts) and the database driver their config names.
EXTRAS = ("gunicorn", "PyMySQL", "python-memcached")

# how each service manager restarts, starts, stops and reports a program (the recipe's
# {{manager_*}} words); supervisorctl status exits non-zero unless the program is RUNNING;
# manager_log: the program's last output (what a program that cannot start said)
MANAGERS: dict[str, dict[str, list[str]]] = {
    "supervisor": {
        "manager_restart": ["supervisorctl", "restart"],
        "manager_start": ["supervisorctl", "start"],
        "manager_stop": ["supervisorctl", "stop"],
        "manager_status": ["supervisorctl", "status"],
        "manager_log": ["supervisorctl", "tail", "-3000"],
    },
    "systemd": {
        "manager_restart": ["systemctl", "restart"],
        "manager_start": ["systemctl", "start"],
        "manager_stop": ["systemctl", "stop"],
        "manager_status": ["systemctl", "is-active"],
        "manager_log": ["journalctl", "--no-pager", "-o", "cat", "-n", "20", "-u"],
    },
}
