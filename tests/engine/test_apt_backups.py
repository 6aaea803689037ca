"""Backups you can restore from: a private directory, the run id in every name (a later run
never overwrites the only good dump), a dump that is not empty, the configuration beside it."""

from __future__ import annotations

from pathlib import Path

from core import events as ev
from core.lab.commands import run_command
from tests.engine.conftest import drive, make


async def test_each_backup_is_named_for_its_run_checked_and_kept_with_its_config(
    tmp_path: Path,
) -> None:
    h = await make(tmp_path)
    try:
        assert await drive(h, lambda g: None) == "complete"
    finally:
        await h.lab.close()
    backup = next(s for s in h.plan.steps if s.action == "db-backup" and s.node == "key1")
    assert backup.command is not None and "{{run_id}}" in backup.command  # the plan: a place
    started = next(e for e in h.events(ev.StepStarted) if e.step == backup.id)
    dump = "/var/backups/rollgate/small-keystone-2025.1-t.sql"  # the run: its id ("t")
    assert started.command is not None and f"--result-file={dump}" in started.command
    assert f"test -s {dump}" in started.command  # an empty dump fails the step
    files = h.lab.world.nodes["key1"].files
    assert files[dump] and "/var/backups/rollgate/small-keystone-etc-2025.1-t.tgz" in files
    assert "--host=localhost" in started.command  # no database node: the controller's own


async def test_a_dump_into_a_directory_that_does_not_exist_fails_in_the_lab(
    tmp_path: Path,
) -> None:
    h = await make()
    try:
        lines: list[str] = []
        status = await run_command(
            h.lab.world,
            h.lab.world.nodes["key1"],
            "mysqldump --result-file=/srv/nowhere/k.sql --databases keystone",
            lambda stream, line: lines.append(line),
        )
    finally:
        await h.lab.close()
    assert status == 2 and "Can't create/write to file '/srv/nowhere/k.sql'" in lines[-1]
