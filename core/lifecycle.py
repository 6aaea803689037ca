"""Where each OpenStack series is in its life (maintained, unmaintained, end of life), from the
dated snapshot of openstack/releases in core/data/series_status.yaml, as of a given day."""

from __future__ import annotations

import datetime
import functools
import itertools
from dataclasses import dataclass
from importlib import resources

import yaml

from rollgate.core.releases import CATALOGUE, Release, UpgradePath

DATA = "data/series_status.yaml"  # in the package (read through importlib: a zip works too)
WORRYING = ("unmaintained", "end of life")


@dataclass(frozen=True)
class Series:
    id: str
    name: str
    status: str
    released: datetime.date | None
    next_status: str | None
    next_date: datetime.date | None
    eol_date: datetime.date | None

    def on(self, day: datetime.date) -> tuple[str, datetime.date | None]:
        """Its status on `day` and since when (None: the snapshot gives no date)."""
        if self.next_status and self.next_date and day >= self.next_date:
            return self.next_status, self.next_date
        if self.status == "end of life":
            return self.status, self.eol_date
        return self.status, None


@functools.cache
def snapshot() -> tuple[str, dict[str, Series]]:
    """The snapshot's date and its series by release id."""
    data = yaml.safe_load(resources.files("rollgate.core").joinpath(DATA).read_text())
    found: dict[str, Series] = {}
    for entry in data["series"]:
        nxt = entry.get("next-phase") or {}
        found[str(entry["release-id"])] = Series(
            str(entry["release-id"]),
            entry["name"],
            entry["status"],
            entry.get("initial-release"),
            nxt.get("status"),
            nxt.get("date"),
            entry.get("eol-date"),
        )
    return str(data["snapshot"]), found


def released(release: Release, day: datetime.date) -> bool:
    """Whether `release` was released by `day` (a series the snapshot does not list: no)."""
    series = snapshot()[1].get(release.id)
    return bool(series and series.released and series.released <= day)


def skip_level_pairs() -> list[str]:
    """The supported skip-level upgrades: each SLURP release to the next one."""
    slurps = [r for r in CATALOGUE if r.slurp]
    return [f"{a.id} -> {b.id}" for a, b in itertools.pairwise(slurps)]


def warnings(path: UpgradePath, day: datetime.date | None = None) -> list[str]:
    """One line for each end of the path that is unmaintained or end of life on `day`."""
    day = day or datetime.date.today()
    taken, series = snapshot()
    out = []
    for which, release in (("source", path.source), ("target", path.target)):
        found = series.get(release.id)
        if found is None:
            continue
        status, since = found.on(day)
        if status in WORRYING:
            when = f" since {since.isoformat()}" if since else ""
            fix = (
                "no more fixes reach it; this upgrade moves off it"
                if which == "source"
                else "it gets no more fixes: choose a maintained target"
            )
            out.append(
                f"the {which} release {release.label} is {status}{when} (openstack/releases, "
                f"snapshot {taken}): {fix}"
            )
    return out


def refusal(path: UpgradePath, day: datetime.date | None = None) -> str:
    """Why the target cannot be planned yet ("" when it can): it is not released on `day`."""
    day = day or datetime.date.today()
    if released(path.target, day):
        return ""
    found = snapshot()[1].get(path.target.id)
    when = f" (due {found.released.isoformat()})" if found and found.released else ""
    return (
        f"{path.target.label} is not released yet{when}: upgrade to a released series, "
        f"e.g. {path.source.label} -> the next one"
    )
