"""Deployment methods: one folder each (recipe, role mapping, plan hooks, checks, lab shell),
gathered here so that adding a method touches its folder and this registry, not the engine."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rollgate.core.recipes import Recipe


class PlanHooks:
    """What a method adds around a node's package upgrade in a plan; the default adds nothing.

    `builder` is the plan's phase builder (core/plan.py `_PhaseBuilder`): hooks add steps with
    `builder.add(action, node, role, ...)`, which drops actions the method's recipe leaves out.
    """

    def before_first_install(self, builder: Any, node: Any, role: str) -> None:
        """Once per node per run, before any of its packages moves (point it at the target)."""

    def before_install(self, builder: Any, node: Any, role: str, roles: list[str]) -> None:
        """Right before `roles`' code is installed on the node (read what is there)."""

    def after_install(self, builder: Any, node: Any, role: str, roles: list[str]) -> None:
        """Right after `roles`' code was installed on the node (verify what moved)."""

    def after_restarts(self, builder: Any, node: Any, role: str) -> None:
        """After the node's own services restarted on the new code (once per node per phase
        that installed on it; at the phase's end for controllers)."""


@dataclass(frozen=True)
class Method:
    """One deployment method: how roles map to its packages and units, and its hooks."""

    name: str
    packages: Mapping[str, str]  # role -> what installs it (a package, an image, a tag)
    units: Mapping[str, str]  # role -> what runs it (a systemd unit, a container)
    hooks: PlanHooks = field(default_factory=PlanHooks)
    # (inventory spec, target release, problem(where, message)) -> None
    check_inventory: Callable[[Any, Any, Callable[..., None]], None] | None = None
    lab_module: str = ""  # the module whose COMMANDS the lab's shell adds for this method
    preflight_module: str = ""  # the module whose check_node(executor, inv, node) adds checks
    # tier -> builder(phase builder): a method whose tool orchestrates the upgrade itself
    # (kolla-ansible) builds its phases its own way; None: core/plan.py's per-node builders
    builders: Mapping[str, Callable[[Any], None]] | None = None
    # (inventory, recipe variables) -> the values its commands need besides core/plan.py's
    plan_values: Callable[[Any, Mapping[str, Any]], dict[str, Any]] | None = None
    plan_value_names: frozenset[str] = frozenset()  # the names plan_values and builders give

    def package(self, role: str) -> str:
        return self.packages.get(role, role)

    def unit(self, role: str) -> str:
        return self.units.get(role, role)

    def recipe(self) -> Recipe:
        from rollgate.core.recipes import load_recipe

        return load_recipe(self.name)


_REGISTRY = {
    "apt": "rollgate.core.methods.apt",
    "kolla": "rollgate.core.methods.kolla",
    "venv": "rollgate.core.methods.venv",
}
NAMES = tuple(_REGISTRY)


@cache
def method(name: str) -> Method:
    """The method called `name` (each folder's `METHOD`)."""
    if name not in _REGISTRY:
        raise KeyError(f"no deployment method {name!r}; known: {', '.join(NAMES)}")
    found: Method = importlib.import_module(_REGISTRY[name]).METHOD
    return found


@cache
def lab_commands() -> dict[str, Any]:
    """Every method's commands for the lab's shell, by command name."""
    commands: dict[str, Any] = {}
    for name in NAMES:
        module = method(name).lab_module
        if module:
            commands.update(importlib.import_module(module).COMMANDS)
    return commands
