"""The OpenStack release catalogue (DOMAIN.md §3) and which upgrade paths are supported."""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass
from typing import Any

SERVICES = ("keystone", "glance", "nova", "neutron", "cinder", "placement")


@dataclass(frozen=True)
class Release:
    """One coordinated OpenStack release and its major package versions per service."""

    id: str
    name: str
    slurp: bool
    majors: dict[str, int]

    @property
    def label(self) -> str:
        return f"{self.id} ({self.name.capitalize()})"

    @property
    def index(self) -> int:
        """Its place in the catalogue (oldest 0)."""
        return _INDEX[self.id]

    def __hash__(self) -> int:
        return hash(self.id)


def _release(id_: str, name: str, slurp: bool, *majors: int) -> Release:
    return Release(id_, name, slurp, dict(zip(SERVICES, majors, strict=True)))


CATALOGUE: tuple[Release, ...] = (
    _release("2023.1", "antelope", True, 23, 26, 27, 22, 22, 9),
    _release("2023.2", "bobcat", False, 24, 27, 28, 23, 23, 10),
    _release("2024.1", "caracal", True, 25, 28, 29, 24, 24, 11),
    _release("2024.2", "dalmatian", False, 26, 29, 30, 25, 25, 12),
    _release("2025.1", "epoxy", True, 27, 30, 31, 26, 26, 13),
    _release("2025.2", "flamingo", False, 28, 31, 32, 27, 27, 14),
    _release("2026.1", "gazpacho", True, 29, 32, 33, 28, 28, 15),
    _release("2026.2", "hibiscus", False, 30, 33, 34, 29, 29, 16),
)

_INDEX = {release.id: i for i, release in enumerate(CATALOGUE)}


def kolla_ansible_major(release: Release) -> int:
    """The kolla-ansible major version that deploys `release` (openstack/releases
    deliverables/<series>/kolla-ansible.yaml: 16.x is 2023.1 Antelope, one major a release)."""
    return 16 + release.index


# Ubuntu Cloud Archive (https://wiki.ubuntu.com/OpenStack/CloudArchive): each LTS series ships
# one OpenStack release in its own archive and carries the next ones as UCA pockets; "any given
# UCA OpenStack release can be enabled on exactly one Ubuntu LTS release". docs/apt-method.md.
UBUNTU_SERIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "jammy": ("yoga", ("zed", "antelope", "bobcat", "caracal")),
    "noble": ("caracal", ("dalmatian", "epoxy", "flamingo", "gazpacho")),
    "resolute": ("gazpacho", ("hibiscus",)),  # 26.04 LTS [unverified: from the pattern]
}


def package_source(release: Release, series: str) -> str | None:
    """Where `series` gets `release`: "archive" (the series ships it), the UCA pocket
    ("cloud-archive:<name>"), or None when that series cannot carry it."""
    archive, pockets = UBUNTU_SERIES.get(series, ("", ()))
    if release.name == archive:
        return "archive"
    if release.name in pockets:
        return f"cloud-archive:{release.name}"
    return None


def series_for(release: Release) -> list[str]:
    """The Ubuntu series that can carry `release`."""
    return [s for s in UBUNTU_SERIES if package_source(release, s) is not None]


class ReleaseError(ValueError):
    """A release that is not in the catalogue, or an unsupported upgrade path."""


DEFAULT_UBUNTU_SERIES = "noble"  # a site's Ubuntu series when its inventory names none


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
            out[name] = (DEFAULT_UBUNTU_SERIES, ("upgrade", "to"))
    return out


def find_release(text: str | float) -> Release:
    """Look a release up by id (`2025.1`) or name (`epoxy`), case-insensitively."""
    key = str(text).strip().lower()
    for release in CATALOGUE:
        if key in (release.id, release.name):
            return release
    known = ", ".join(f"{r.id} ({r.name})" for r in CATALOGUE)
    raise ReleaseError(f"unknown release {str(text)!r}; known releases: {known}")


def release_for_major(service: str, major: int) -> Release | None:
    """The release whose package of `service` has this major version, if any."""
    for release in CATALOGUE:
        if release.majors.get(service) == major:
            return release
    return None


def _next_hops(release: Release) -> list[Release]:
    """Releases one supported upgrade away: N+1 always, and the next SLURP from a SLURP."""
    hops: list[Release] = []
    i = release.index
    if i + 1 < len(CATALOGUE):
        hops.append(CATALOGUE[i + 1])
    if release.slurp:
        nxt = next((r for r in CATALOGUE[i + 1 :] if r.slurp), None)
        if nxt is not None and nxt not in hops:
            hops.append(nxt)
    return hops


def shortest_path(source: Release, target: Release) -> list[Release]:
    """The fewest supported upgrades that lead from `source` to `target` (both included)."""
    previous: dict[str, Release | None] = {source.id: None}
    queue = deque([source])
    while queue:
        here = queue.popleft()
        if here == target:
            break
        # Prefer the longer (SLURP) hop so that the path has the fewest upgrades.
        for hop in sorted(_next_hops(here), key=lambda r: -r.index):
            if hop.id not in previous and hop.index <= target.index:
                previous[hop.id] = here
                queue.append(hop)
    path = [target]
    while (before := previous.get(path[-1].id)) is not None:
        path.append(before)
    return list(reversed(path))


@dataclass(frozen=True)
class UpgradePath:
    """A supported single upgrade from one release to another."""

    source: Release
    target: Release

    @property
    def skip_level(self) -> bool:
        return self.target.index - self.source.index > 1

    def describe(self) -> str:
        text = f"{self.source.label} -> {self.target.label}"
        return text + " (skip-level)" if self.skip_level else text


def validate_path(source: Release, target: Release) -> UpgradePath:
    """Accept N -> N+1 and SLURP -> next SLURP; refuse anything else with the way to go."""
    if target == source:
        raise ReleaseError(f"from and to are both {source.id}: there is nothing to upgrade")
    if target.index < source.index:
        raise ReleaseError(
            f"{source.id} -> {target.id} is a downgrade; OpenStack databases cannot be "
            "downgraded: restore from backups instead"
        )
    if target in _next_hops(source):
        return UpgradePath(source, target)
    hops = " -> ".join(r.id for r in shortest_path(source, target))
    slurps = [r for r in CATALOGUE if r.slurp]
    pairs = ", ".join(f"{a.id} -> {b.id}" for a, b in itertools.pairwise(slurps))
    raise ReleaseError(
        f"{source.id} -> {target.id} is not a supported upgrade; upgrade one step at a time "
        f"instead: {hops} (skip-level upgrades go from a SLURP release to the next: {pairs})"
    )
