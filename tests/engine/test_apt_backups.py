"""Backups you can restore from: a private directory, the run id in every name (a later run
never overwrites the only good dump), a dump that is not empty, the configuration beside it."""

from __future__ import annotations

from pathlib import Path

from rollgate.core import events as ev
from rollgate.core.lab.commands import run_command
from tests.engine.conftest import abort_at_failure, drive, make


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


async def test_pulled_backups_arrive_whole_with_their_checksums_in_the_journal(
    tmp_path: Path,
) -> None:
    import hashlib

    h = await make(tmp_path, recipe={"variables": {"pull_backups": "yes"}})
    try:
        assert await drive(h, lambda g: None) == "complete"
    finally:
        await h.lab.close()
    pulled = h.events(ev.BackupPulled)
    pulls = [s for s in h.plan.steps if s.action.startswith("pull-")]
    assert len(pulled) == len(pulls) >= 3  # keystone: dump, /etc, keys
    for event in pulled:
        local = Path(event.local)
        assert local.is_file() and local.stat().st_mode & 0o777 == 0o600
        assert local.parent.stat().st_mode & 0o777 == 0o700
        on_node = h.lab.world.nodes[event.node].files[event.remote].encode()
        assert local.read_bytes() == on_node
        assert event.sha256 == hashlib.sha256(on_node).hexdigest() and event.size == len(on_node)
    dump = next(e for e in pulled if e.remote.endswith("small-keystone-2025.1-t.sql"))
    assert Path(dump.local) == tmp_path / "backups" / "key1" / "small-keystone-2025.1-t.sql"
    journal = (tmp_path / "journal.jsonl").read_text()
    body = Path(dump.local).read_bytes()
    import base64

    assert base64.b64encode(body).decode()[:40] not in journal  # the bytes stay out of it


async def test_a_copy_whose_checksum_differs_fails_its_step(tmp_path: Path) -> None:
    lying = (
        "echo " + "0" * 64 + "  {{backup_dir}}/x.sql && "
        "base64 {{backup_dir}}/{{cloud}}-{{service}}-{{from}}-{{run_id}}.sql"
    )
    h = await make(
        tmp_path,
        recipe={"variables": {"pull_backups": "yes"}, "actions": {"pull-dump": lying}},
    )

    try:
        assert await drive(h, abort_at_failure) == "aborted"
    finally:
        await h.lab.close()
    failed = next(e for e in h.events(ev.StepFinished) if e.outcome == "failed")
    assert failed.step.endswith("keystone.pull-dump")
    assert "the copy of the backup is not whole: sha256" in failed.error


async def test_a_dump_restores_the_database_and_the_archive_restores_the_configuration(
    tmp_path: Path,
) -> None:
    """docs/apt-method.md's restore procedure, in the lab: after the upgrade moved keystone's
    schema, the run's dump puts it back, and the /etc archive puts the files back."""
    h = await make(tmp_path)
    try:
        assert await drive(h, lambda g: None) == "complete"
        world = h.lab.world
        key1 = world.nodes["key1"]
        assert world.database(key1, "keystone").schema.id == "2025.2"
        said: list[str] = []
        dump = "/var/backups/rollgate/small-keystone-2025.1-t.sql"
        status = await run_command(
            world, key1, f"mysql --host=localhost < {dump}", lambda s, line: said.append(line)
        )
        assert status == 0, said
        assert world.database(key1, "keystone").schema.id == "2025.1"
        # the target's migrations added a table; the restore dropped the database, so
        # upgrading again after the way back does not find it "already exists"
        assert world.database(key1, "keystone").stale == ()
        again = "keystone-manage db_sync --expand"
        assert await run_command(world, key1, again, lambda s, line: said.append(line)) == 0
        assert world.database(key1, "keystone").expanded.id == "2025.2"  # type: ignore[union-attr]
        ctl = world.nodes["one-ctl1"]
        conf = "/etc/nova/nova.conf"
        kept = ctl.files[conf]
        ctl.files[conf] = "[DEFAULT]\nbroken = yes\n"
        archive = "/var/backups/rollgate/small-nova-etc-2025.1-t.tgz"
        assert await run_command(world, ctl, f"tar -xzf {archive} -C /", said.append) == 0
        assert ctl.files[conf] == kept
    finally:
        await h.lab.close()


async def test_a_dump_without_drop_database_leaves_the_new_tables_and_the_retry_fails(
    tmp_path: Path,
) -> None:
    """The lab's MySQL as the manual says: with --databases alone a dump recreates only the
    tables it holds; the table the target's migration added stays while the schema goes
    back, and the next expand fails on it."""
    h = await make(tmp_path)
    try:
        world = h.lab.world
        key1 = world.nodes["key1"]
        said: list[str] = []

        async def sh(command: str) -> int:
            return await run_command(world, key1, command, lambda s, line: said.append(line))

        dump = "/var/backups/rollgate/by-hand.sql"
        assert await sh("install -d -m 0700 /var/backups/rollgate") == 0
        assert await sh(f"mysqldump --result-file={dump} --databases keystone") == 0
        for package in key1.packages:  # the target's keystone installed
            key1.packages[package] = world.target
        assert await sh("keystone-manage db_sync --expand") == 0, said
        assert await sh(f"mysql < {dump}") == 0
        assert world.database(key1, "keystone").stale == ("keystone_2025_2_added",)
        assert await sh("keystone-manage db_sync --expand") == 1
        assert said[-1] == (
            "ERROR 1050 (42S01) at line 1: Table 'keystone_2025_2_added' already exists"
        )
    finally:
        await h.lab.close()


async def test_each_backup_is_journalled_with_what_a_restore_needs(tmp_path: Path) -> None:
    """The file on the node, its sha256 as the node computed it, the release it was taken
    at and its databases: in the journal, and in the change record."""
    import hashlib

    from rollgate.core.client import open_journal_client
    from rollgate.core.report import build_report, to_markdown

    h = await make(tmp_path)
    try:
        assert await drive(h, lambda g: None) == "complete"
        files = {n: node.files for n, node in h.lab.world.nodes.items()}
    finally:
        await h.lab.close()
    taken = h.events(ev.BackupTaken)
    backups = [s for s in h.plan.steps if s.action == "db-backup"]
    assert len(taken) == len(backups) and {e.step for e in taken} == {s.id for s in backups}
    nova = next(e for e in taken if e.service == "nova")
    assert nova.file == "/var/backups/rollgate/small-nova-2025.1-t.sql"
    assert nova.sha256 == hashlib.sha256(files[nova.node][nova.file].encode()).hexdigest()
    assert (nova.source, nova.databases, nova.where) == (
        "2025.1", ("nova_api", "nova", "nova_cell0"), "",
    )  # fmt: skip
    h.engine.journal.close()  # type: ignore[union-attr]
    client = open_journal_client(str(tmp_path / "journal.jsonl"))
    report = build_report(client.plan, client.header, client.all_events())
    assert {
        "node": nova.node, "service": "nova", "file": nova.file, "sha256": nova.sha256,
        "source": "2025.1", "databases": ["nova_api", "nova", "nova_cell0"], "where": "",
    } in report["backups"]  # fmt: skip
    assert f"`{nova.file}` sha256 `{nova.sha256}`" in to_markdown(report)


async def test_check_tries_the_dump_credentials_and_the_room_before_the_window() -> None:
    """`rollgate check`: `mysqldump --no-data` of each service's databases on the node that
    dumps them, and the databases' size (information_schema) against `df` of the backup
    directory (its nearest existing parent before the first backup made it)."""
    from rollgate.core.backup_check import check_backups

    h = await make(faults=["fail:one-ctl1:mysqldump --host=localhost --no-data", "disk:key1:1000"])
    try:
        findings = await check_backups(h.lab.executor(), h.inventory)
    finally:
        await h.lab.close()
    by = {(f.target, f.check): f for f in findings}
    assert by[("two-ctl1", "nova backup")].ok
    refused = by[("one-ctl1", "glance backup")]
    assert not refused.ok and refused.blocking
    assert refused.detail.startswith("mysqldump --no-data failed: the backup would fail")
    room = by[("two-ctl1", "backup room")]
    assert room.ok and room.detail.startswith("360.0 MiB needed in /var/backups/rollgate (")
    assert "free on /var/backups's disk" in room.detail  # the directory is not made yet
    full = by[("key1", "backup room")]
    assert not full.ok and full.detail.startswith("too little room: 60.0 MiB needed")
