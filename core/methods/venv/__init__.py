"""The virtualenv method (OpenStack-Ansible's way): each release's services in a virtualenv of
their own, installed from PyPI beside the old one before the window, each service switched to
it when its turn comes, run by a process supervisor (supervisor or systemd)."""

from __future__ import annotations

from rollgate.core.methods import Method
from rollgate.core.methods.venv.mapping import DISTRIBUTIONS, PROGRAMS
from rollgate.core.methods.venv.plan import BUILDERS, VALUE_NAMES, VenvHooks, check_inventory, plan_values

METHOD = Method(
    name="venv",
    packages=DISTRIBUTIONS,
    units=PROGRAMS,
    hooks=VenvHooks(),
    check_inventory=check_inventory,
    builders=BUILDERS,
    plan_values=plan_values,
    plan_value_names=VALUE_NAMES,
    preflight_module="rollgate.core.methods.venv.preflight",
)
