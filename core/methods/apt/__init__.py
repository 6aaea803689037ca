"""The apt method: Ubuntu Cloud Archive packages and systemd units, driven over SSH."""

from __future__ import annotations

from typing import Any

from rollgate.core.methods import Method
from rollgate.core.methods.apt.mapping import PACKAGES, UNITS
from rollgate.core.methods.apt.plan_hooks import AptHooks

DEFAULT_SERIES = "noble"


def site_series(spec: Any) -> dict[str, tuple[str, tuple[str | int, ...]]]:
    """Each site's Ubuntu series (the recipe variable ubuntu_series, the site's over the
    cloud's, default noble) and where the inventory says it."""
    cloud = spec.recipe.variables.get("ubuntu_series") if spec.recipe else None
    out: dict[str, tuple[str, tuple[str | int, ...]]] = {}
    for name, site in spec.sites.items():
        at_site = site.recipe.variables.get("ubuntu_series") if site.recipe else None
        if at_site:
            out[name] = (str(at_site), ("sites", name, "recipe", "variables", "ubuntu_series"))
        elif cloud:
            out[name] = (str(cloud), ("recipe", "variables", "ubuntu_series"))
        else:
            out[name] = (DEFAULT_SERIES, ("upgrade", "to"))
    return out


def check_series(spec: Any, target: Any, problem: Any) -> None:
    """Each site's Ubuntu series must be able to carry the target release (its own archive
    or a Cloud Archive pocket); else say which series can."""
    from rollgate.core.releases import package_source, series_for

    for name, (series, where) in site_series(spec).items():
        if package_source(target, series) is None:
            problem(
                where,
                f"Ubuntu {series} (site {name}) cannot carry {target.label}: the Ubuntu Cloud "
                f"Archive has it for {', '.join(series_for(target)) or 'no LTS series'}; set "
                "recipe.variables.ubuntu_series to the nodes' series",
            )


METHOD = Method(
    name="apt",
    packages=PACKAGES,
    units=UNITS,
    hooks=AptHooks(),
    check_inventory=check_series,
    lab_module="rollgate.core.methods.apt.lab",
    preflight_module="rollgate.core.methods.apt.preflight",
)
