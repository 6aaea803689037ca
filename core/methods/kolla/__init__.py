"""The kolla-ansible method: the deploy host runs `kolla-ansible upgrade`; containers are
named after roles (nova_compute ...)."""

from __future__ import annotations

from core.methods import Method
from core.roles import ROLES

METHOD = Method(
    name="kolla",
    packages={role: role for role in ROLES},
    units={role: role.replace("-", "_") for role in ROLES},
    lab_module="core.methods.kolla.lab",
)
