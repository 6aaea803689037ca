"""Deployment methods as plug-ins: the `Method` interface each one implements, and the registry
that finds them in the `rollgate.methods` entry-point group (apt, kolla and venv register there
exactly as a method from another distribution would).

A method says how roles map to what it installs and runs, which recipe renders its commands,
what it adds to a plan (per-node hooks or whole phase builders), what it checks before a run,
what the lab's shell answers for its tools, what must be undone when a run ends part-way, and
what the end of a run and its report say about it. Nothing outside a method's own package
names its tools or files: the engine, reducer, events, report and narration call these hooks.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import metadata, resources
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from rollgate.core.executor import Executor
    from rollgate.core.inventory import Inventory, InventorySpec, Node
    from rollgate.core.lab import LabHandler, World
    from rollgate.core.plan import PhaseBuilder, Plan
    from rollgate.core.preflight import Finding
    from rollgate.core.recipes import Recipe
    from rollgate.core.releases import Release
    from rollgate.core.state import RunState

ENTRY_POINTS = "rollgate.methods"

# (where in the inventory, message): how an inventory check reports a problem
Problem = Callable[[tuple[str | int, ...], str], None]
# builds a phase's stages for one tier at one site
Builder = Callable[["PhaseBuilder"], None]


class PlanHooks:
    """What a method adds around a node's install in core/plan.py's per-node builders; the
    default adds nothing. Hooks add steps with `builder.add(action, node, role, ...)`, which
    drops actions the method's recipe leaves out."""

    def before_first_install(self, builder: PhaseBuilder, node: Node, role: str) -> None:
        """Once per node per run, before any of its code moves (point it at the target)."""

    def before_install(
        self, builder: PhaseBuilder, node: Node, role: str, roles: list[str]
    ) -> None:
        """Right before `roles`' code is installed on the node (read what is there)."""

    def after_install(self, builder: PhaseBuilder, node: Node, role: str, roles: list[str]) -> None:
        """Right after `roles`' code was installed on the node (verify what moved)."""

    def after_restarts(self, builder: PhaseBuilder, node: Node, role: str) -> None:
        """After the node's own services restarted on the new code (once per node per phase
        that installed on it; at the phase's end for controllers)."""

    def after_node_installed(self, builder: PhaseBuilder, node: Node, role: str) -> None:
        """Once per node per run, right after its last install (every role's code is in
        place, its phase's restarts still to come): the rest of the node."""

    def rollback_code(
        self,
        builder: PhaseBuilder,
        node: Node,
        role: str,
        roles: list[str],
        before: Mapping[str, str],
    ) -> None:
        """A rollback, with the node's programs of `roles` stopped: put the source's code back
        (`before`: package -> the version the run read before it moved anything). The builder's
        inventory is turned around: its `to` is the source release."""

    def verify_node(self, builder: PhaseBuilder, node: Node, role: str) -> None:
        """In the final verification, the method's own read-back of the node (steps added
        here are deviations when they find something, as the rest of that phase)."""


@dataclass(frozen=True)
class Cleanup:
    """Work a method needs done on a node when a run ends part-way (aborted, stopped, failed)
    before its plan did it: `command` runs on the node; `what` says what it achieves."""

    node: str
    command: str
    what: str


class Method:
    """One deployment method. Subclass it, set the class attributes, override the hooks you
    need, and register an instance (or the class) in the `rollgate.methods` entry-point group
    under `name`, the inventory's `method:`."""

    name: ClassVar[str] = ""
    packages: ClassVar[Mapping[str, str]] = {}  # role -> what installs it (package, image...)
    units: ClassVar[Mapping[str, str]] = {}  # role -> what runs it (unit, container, program)
    hooks: ClassVar[PlanHooks] = PlanHooks()
    # the names plan_values and the builders give commands besides core/plan.py's own
    plan_value_names: ClassVar[frozenset[str]] = frozenset()
    # tier -> builder, for a method whose tool orchestrates the upgrade itself; None:
    # core/plan.py's per-node builders with this method's hooks
    builders: ClassVar[Mapping[str, Builder] | None] = None
    # why `rollgate rollback` cannot undo this method's upgrade ("": it can)
    rollback_refusal: ClassVar[str] = ""

    def package(self, role: str) -> str:
        return self.packages.get(role, role)

    def unit(self, role: str) -> str:
        return self.units.get(role, role)

    def recipe(self) -> Recipe:
        """The method's recipe: recipe.yaml beside the module that defines the class."""
        from rollgate.core.recipes import RecipeError, parse_recipe_text

        package = sys.modules[type(self).__module__].__package__ or type(self).__module__
        try:
            text = resources.files(package).joinpath("recipe.yaml").read_text("utf-8")
        except (FileNotFoundError, ModuleNotFoundError) as exc:
            raise RecipeError(f"method {self.name!r} has no recipe.yaml in {package}") from exc
        return parse_recipe_text(text, f"{package.replace('.', '/')}/recipe.yaml")

    def check_inventory(self, spec: InventorySpec, target: Release, problem: Problem) -> None:
        """Refuse an inventory this method cannot upgrade (problem(where, message) each)."""

    def plan_values(self, inventory: Inventory, variables: Mapping[str, Any]) -> dict[str, Any]:
        """The values its commands need besides core/plan.py's (once per site)."""
        return {}

    async def preflight(
        self, executor: Executor, inventory: Inventory, node: Node
    ) -> list[Finding]:
        """`rollgate check`'s own checks of one node, changing nothing."""
        return []

    def lab_commands(self) -> Mapping[str, LabHandler]:
        """The commands the lab's shell answers for this method's tools, by name."""
        return {}

    def lab_seed(self, world: World) -> None:
        """What this method's hosts hold in a new lab world before any run."""

    def cleanups(self, plan: Plan, state: RunState) -> list[Cleanup]:
        """Called by the engine when a run ends part-way: what must be undone on each node
        (run once each; the outcome is journalled)."""
        return []

    def outcome_notes(self, plan: Plan, state: RunState) -> list[str]:
        """Lines the end of a run, `status` and the report add about this method's work (what
        is still left as the run made it, and how to put it right)."""
        return []


class UnknownMethod(KeyError):
    """No method of that name is registered."""

    def __str__(self) -> str:
        return str(self.args[0])


@cache
def _entry_points() -> dict[str, metadata.EntryPoint]:
    found: dict[str, metadata.EntryPoint] = {}
    for entry in metadata.entry_points(group=ENTRY_POINTS):
        found.setdefault(entry.name, entry)
    return found


def names() -> tuple[str, ...]:
    """Every registered method's name, sorted."""
    return tuple(sorted(_entry_points()))


@cache
def method(name: str) -> Method:
    """The method registered as `name`."""
    entry = _entry_points().get(name)
    if entry is None:
        known = ", ".join(names()) or "none (is Rollgate installed? pip install -e .)"
        raise UnknownMethod(f"no deployment method {name!r}; known: {known}")
    found = entry.load()
    if isinstance(found, type) and issubclass(found, Method):
        found = found()
    if not isinstance(found, Method):
        raise UnknownMethod(
            f"the {ENTRY_POINTS} entry point {name!r} ({entry.value}) is not a "
            "rollgate.core.methods.Method"
        )
    if found.name != name:
        raise UnknownMethod(
            f"the {ENTRY_POINTS} entry point {name!r} ({entry.value}) names itself {found.name!r}"
        )
    return found


@cache
def lab_commands() -> dict[str, LabHandler]:
    """Every method's commands for the lab's shell, by command name."""
    commands: dict[str, LabHandler] = {}
    for name in names():
        commands.update(method(name).lab_commands())
    return commands
