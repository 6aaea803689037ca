"""The deployment-method registry: every method the inventory accepts has its folder, recipe
and names, and the names are the distribution's."""

from __future__ import annotations

from typing import get_args

import pytest

from rollgate.core.inventory import InventorySpec
from rollgate.core.methods import NAMES, lab_commands, method
from rollgate.core.roles import ROLES


def test_the_inventory_accepts_exactly_the_registered_methods() -> None:
    assert get_args(InventorySpec.model_fields["method"].annotation) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_each_method_has_a_recipe_and_names_every_role(name: str) -> None:
    found = method(name)
    recipe = found.recipe()
    assert recipe.method == name
    for role in ROLES:
        assert found.package(role) and found.unit(role)


def test_ubuntu_runs_the_wsgi_apis_under_apache() -> None:
    apt = method("apt")
    for role in ("keystone", "placement-api", "cinder-api", "horizon"):
        assert apt.unit(role) == "apache2"
    assert apt.unit("cinder-scheduler") == "cinder-scheduler"
    assert apt.package("neutron-l2-agent") == "neutron-openvswitch-agent"


def test_the_lab_shell_gets_each_methods_commands() -> None:
    commands = lab_commands()
    assert {"apt-get", "add-apt-repository", "dpkg-query", "apt-mark", "docker"} <= set(commands)


def test_an_unknown_method_is_named() -> None:
    with pytest.raises(KeyError, match="no deployment method 'rpm'; known: apt, kolla"):
        method("rpm")
