"""The deployment-method registry: the built-in methods are found through the rollgate.methods
entry points like any other, each has its recipe and names every role."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollgate.core.inventory import InventoryError, load_inventory
from rollgate.core.methods import Method, lab_commands, method, names
from rollgate.core.roles import ROLES

BASE = Path(__file__).parent / "inventory" / "base.yaml"
BUILT_IN = ("apt", "kolla", "venv")


def test_the_built_in_methods_are_registered_as_entry_points() -> None:
    assert set(BUILT_IN) <= set(names())
    assert all(isinstance(method(name), Method) for name in BUILT_IN)


def test_an_inventory_naming_an_unregistered_method_is_told_the_registered_ones(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: atp\n" + BASE.read_text())
    with pytest.raises(InventoryError) as caught:
        load_inventory(bad)
    assert [str(p) for p in caught.value.problems] == [
        f"{bad}:1: method: 'atp' is not one of 'apt', 'kolla' or 'venv'; did you mean 'apt'?"
    ]


@pytest.mark.parametrize("name", BUILT_IN)
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
