"""Recipes: what each plan action of a deployment method runs (core/methods/<method>/recipe.yaml),
rendered with shell quoting."""

from __future__ import annotations

import functools
import re
import shlex
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import yaml

OUTCOMES = ("ok", "warning", "failed", "repeat")
_PLACEHOLDER = re.compile(r"\{\{([a-z_]+)\}\}")


# Values only the run knows, filled in by the engine when a step starts (the plan keeps the
# placeholder, so the same inventory still gives the same plan).
RUNTIME_VALUES = frozenset({"run_id"})

# Values the plan gives every command besides the recipe's variables (core/plan.py values());
# a method may give more (Method.plan_value_names).
PLAN_VALUES = frozenset(
    {
        "cloud", "from", "to", "to_pocket", "service", "databases", "node", "site", "unit",
        "package", "packages", "container", "db_host", "units", "unit_packages",
        *RUNTIME_VALUES,
    }
)  # fmt: skip

# Checks a recipe may leave out (a method written before Rollgate asked for them): the plan
# then has no such step, and what the step would have read is said to be unread, not assumed.
OPTIONAL_ACTIONS = frozenset(
    {"running-version", "schema-version", "api-schema-version", "service-versions"}
)


def placeholders(template: str) -> list[str]:
    """The `{{name}}` placeholders of a command template, in order."""
    return _PLACEHOLDER.findall(template)


@dataclass(frozen=True)
class SecretRef:
    """A secret variable's place in a command: rendered as a token, filled only by the
    executor (core/secrets.py)."""

    name: str

    @property
    def token(self) -> str:
        return f"{{{{secret:{self.name}}}}}"

    def __str__(self) -> str:
        return self.token


class RecipeError(ValueError):
    """A recipe file is malformed or a command needs a value nobody gave."""


@dataclass(frozen=True)
class Action:
    """One thing a step can do: a command template and what its exit codes mean."""

    name: str
    title: str
    run: str
    on: str = "node"  # node (over SSH) or deploy-host (local)
    exit_codes: dict[int, str] = field(default_factory=lambda: {0: "ok"})
    repeat_max: int = 1


@dataclass(frozen=True)
class Recipe:
    method: str
    description: str
    variables: dict[str, Any]  # str, or SecretRef for a secret variable
    databases: dict[str, list[str]]
    actions: dict[str, Action | None]

    def with_overrides(self, variables: dict[str, Any], actions: dict[str, str | None]) -> Recipe:
        """This recipe with an inventory's changes: new variables, actions replaced or
        removed (None). A replaced action keeps its title and exit-code meaning."""
        merged: dict[str, Action | None] = dict(self.actions)
        for key, run in actions.items():
            if key not in self.actions:
                known = ", ".join(sorted(self.actions))
                raise RecipeError(
                    f"recipe override {key!r} names no action of the "
                    f"{self.method!r} recipe; known actions: {known}"
                )
            base = self.actions[key]
            if run is None:
                merged[key] = None
            elif base is None:
                merged[key] = Action(key, key, run)
            else:
                merged[key] = Action(
                    base.name, base.title, run, base.on, base.exit_codes, base.repeat_max
                )
        given = {k: v if isinstance(v, str) else SecretRef(k) for k, v in variables.items()}
        return Recipe(
            self.method, self.description, {**self.variables, **given}, self.databases, merged
        )

    def action(self, service: str, name: str) -> Action | None:
        """The action for `service`, falling back to the generic one; None when not used."""
        key = f"{service}:{name}"
        if key in self.actions:
            return self.actions[key]
        if name in self.actions:
            return self.actions[name]
        if name in OPTIONAL_ACTIONS:
            return None
        raise RecipeError(f"recipe {self.method!r} has no action {name!r} (nor {key!r})")


_NONE: dict[str, Any] = {}


def render(template: str, values: dict[str, Any], base: dict[str, Any] = _NONE) -> str:
    """Fill `{{name}}` placeholders from `values`, else `base` (a site's values, shared by its
    nodes' steps: not copied for each); strings are shell-quoted, lists become quoted words."""
    literals, names = _pieces(template)
    if not names:
        return template
    out = [literals[0]]
    for name, literal in zip(names, literals[1:], strict=True):
        if name in RUNTIME_VALUES:
            out.append(f"{{{{{name}}}}}")  # filled by the engine: fill_runtime()
        elif name not in values and name not in base:
            raise RecipeError(f"no value for {{{{{name}}}}} in {template!r}")
        else:
            value = values[name] if name in values else base[name]
            if isinstance(value, SecretRef):
                out.append(value.token)  # filled, quoted, by the executor: core/secrets.py
            elif isinstance(value, list | tuple):
                out.append(" ".join(_quote(str(v)) for v in value))
            else:
                out.append(_quote(str(value)))
        out.append(literal)
    return "".join(out)


@functools.lru_cache(maxsize=4096)
def _pieces(template: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A template's literal text and the placeholders between, split once (a plan renders
    each of a recipe's few hundred templates for every node)."""
    parts = _PLACEHOLDER.split(template)
    return tuple(parts[0::2]), tuple(parts[1::2])


# a plan of 10,000 nodes quotes the same few hundred values a hundred thousand times
_quote = functools.lru_cache(maxsize=1 << 16)(shlex.quote)


def fill_runtime(command: str, values: dict[str, str]) -> str:
    """A step's command with the values only the run knows (RUNTIME_VALUES), quoted."""
    return _PLACEHOLDER.sub(
        lambda m: shlex.quote(values[m.group(1)]) if m.group(1) in values else m.group(0),
        command,
    )


def render_title(template: str, values: dict[str, Any], base: dict[str, Any] = _NONE) -> str:
    """Like render, without quoting: for human-readable titles."""
    literals, names = _pieces(template)
    if not names:
        return template
    out = [literals[0]]
    for name, literal in zip(names, literals[1:], strict=True):
        value = values[name] if name in values else base.get(name, f"{{{{{name}}}}}")
        out.append(" ".join(map(str, value)) if isinstance(value, list | tuple) else str(value))
        out.append(literal)
    return "".join(out)


def parse_recipe(data: dict[str, Any], source: str) -> Recipe:
    if not isinstance(data, dict) or "method" not in data or "actions" not in data:
        raise RecipeError(f"{source}: a recipe needs 'method' and 'actions'")
    actions: dict[str, Action | None] = {}
    for name, body in data["actions"].items():
        if body is None:
            actions[name] = None
            continue
        if isinstance(body, str):
            body = {"run": body}
        unknown = set(body) - {"title", "run", "where", "exit_codes", "repeat_max"}
        if unknown or "run" not in body:
            raise RecipeError(
                f"{source}: action {name!r} needs 'run' and knows only title, "
                f"where, exit_codes, repeat_max (got {sorted(body)})"
            )
        codes = {int(k): str(v) for k, v in (body.get("exit_codes") or {0: "ok"}).items()}
        bad = [v for v in codes.values() if v not in OUTCOMES]
        if bad:
            raise RecipeError(
                f"{source}: action {name!r}: outcome {bad[0]!r} is not one of {', '.join(OUTCOMES)}"
            )
        on = body.get("where", "node")
        if on not in ("node", "deploy-host"):
            raise RecipeError(f"{source}: action {name!r}: 'where' is node or deploy-host")
        actions[name] = Action(
            name,
            str(body.get("title", name)),
            str(body["run"]),
            on,
            codes,
            int(body.get("repeat_max", 1)),
        )
    return Recipe(
        method=str(data["method"]),
        description=str(data.get("description", "")),
        variables={k: str(v) for k, v in (data.get("variables") or {}).items()},
        databases={k: list(v) for k, v in (data.get("databases") or {}).items()},
        actions=actions,
    )


def parse_recipe_text(text: str, source: str) -> Recipe:
    """A recipe from its YAML text (`source` names it in errors)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{source}: not valid YAML ({exc})") from None
    return parse_recipe(data, source)


@cache
def load_recipe(method: str) -> Recipe:
    """The recipe of the deployment method registered as `method` (its recipe.yaml)."""
    from rollgate.core.methods import UnknownMethod
    from rollgate.core.methods import method as find_method

    try:
        return find_method(method).recipe()
    except UnknownMethod as exc:
        raise RecipeError(f"no recipe for deployment method {method!r}: {exc}") from None
