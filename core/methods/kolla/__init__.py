"""The kolla-ansible method: each site's deploy host runs kolla-ansible as its upgrade
procedure says; containers and images have kolla's names (mapping.py)."""

from __future__ import annotations

from rollgate.core.methods import Method
from rollgate.core.methods.kolla.mapping import CONTAINERS, IMAGES
from rollgate.core.methods.kolla.plan import BUILDERS, VALUE_NAMES, check_inventory, plan_values

METHOD = Method(
    name="kolla",
    packages=IMAGES,
    units=CONTAINERS,
    check_inventory=check_inventory,
    lab_module="rollgate.core.methods.kolla.lab",
    preflight_module="rollgate.core.methods.kolla.preflight",
    builders=BUILDERS,
    plan_values=plan_values,
    plan_value_names=VALUE_NAMES,
)
