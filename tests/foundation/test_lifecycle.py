"""Release lifecycle: validate, plan and check warn about unmaintained and end-of-life series
(openstack/releases' dates, shipped as a snapshot), and a target not yet released is refused."""

from __future__ import annotations

import datetime
from pathlib import Path

from rollgate.core.lifecycle import refusal, skip_level_pairs, snapshot, warnings
from rollgate.core.releases import find_release, validate_path
from tests.cli_helpers import rollgate

SAMPLE = Path(__file__).parents[2] / "sample_inventory" / "lab-two-sites.yaml"


def path(source: str, target: str):  # type: ignore[no-untyped-def]
    return validate_path(find_release(source), find_release(target))


def test_status_follows_the_snapshot_dates() -> None:
    day_before, day_of = datetime.date(2026, 10, 1), datetime.date(2026, 10, 2)
    assert warnings(path("2025.1", "2025.2"), day_before) == []
    assert warnings(path("2025.1", "2025.2"), day_of) == [
        "the source release 2025.1 (Epoxy) is unmaintained since 2026-10-02 "
        f"(openstack/releases, snapshot {snapshot()[0]}): no more fixes reach it; this upgrade "
        "moves off it"
    ]
    eol = warnings(path("2024.2", "2025.1"), datetime.date(2026, 12, 5))
    assert eol[0].startswith(
        "the source release 2024.2 (Dalmatian) is end of life since 2026-04-29"
    )
    assert eol[1].startswith("the target release 2025.1 (Epoxy) is unmaintained")
    # caracal is unmaintained with no date for its end of life: said without one
    assert (
        "2024.1 (Caracal) is unmaintained (openstack"
        in warnings(path("2024.1", "2024.2"), datetime.date(2026, 12, 5))[0]
    )


def test_a_target_not_released_yet_is_refused_and_skip_level_pairs_are_named() -> None:
    assert refusal(path("2026.1", "2026.2"), datetime.date(2026, 9, 29)) == (
        "2026.2 (Hibiscus) is not released yet (due 2026-09-30): upgrade to a released series, "
        "e.g. 2026.1 (Gazpacho) -> the next one"
    )
    assert refusal(path("2026.1", "2026.2"), datetime.date(2026, 9, 30)) == ""
    assert skip_level_pairs() == ["2023.1 -> 2024.1", "2024.1 -> 2025.1", "2025.1 -> 2026.1"]


def test_validate_warns_of_an_end_of_life_source(tmp_path: Path) -> None:
    text = SAMPLE.read_text().replace('from: "2025.1"', 'from: "2024.2"', 1)
    inventory = tmp_path / "eol.yaml"
    inventory.write_text(text.replace("to: gazpacho", 'to: "2025.1"', 1))
    done = rollgate(tmp_path / "state", "validate", str(inventory))
    assert done.returncode == 0, done.stderr
    assert "the source release 2024.2 (Dalmatian) is end of life since 2026-04-29" in done.stderr
    assert ": ok: cloud lab-two-sites, 2024.2 (Dalmatian) -> 2025.1 (Epoxy)" in done.stdout


def test_a_run_says_it_once_and_journals_it(tmp_path: Path) -> None:
    """The warning is a note of the run (by "rollgate"): the console's log, a replay and the
    report carry it, not only the terminal that started the run."""
    import json

    small = Path(__file__).parents[1] / "engine" / "small.yaml"
    journal = tmp_path / "j.jsonl"
    done = rollgate(tmp_path / "state", "run", str(small), "--headless", "--auto-approve",
                    "--dry-run", "--journal", str(journal))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("warning: the source release 2025.1 (Epoxy) is unmaintained")
    report = json.loads(rollgate(tmp_path / "state", "report", str(journal), "--format",
                                 "json").stdout)  # fmt: skip
    [note] = report["notes"]
    assert note["operator"] == "rollgate" and "2025.1 (Epoxy) is unmaintained" in note["text"]
