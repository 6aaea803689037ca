"""What `check` reads before the window so the window does not fail on it, each with the
lab behaving as the real thing: the trigger privilege a schema expansion needs (keystone's
upgrade guide; the lab's MySQL refuses as MySQL does), glance's supported offline path, nova's
RPC pin and crudini, and the tools the Cloud Archive switch needs."""

from __future__ import annotations

import dataclasses

from rollgate.core import events as ev
from rollgate.core.inventory import RecipeOverrides
from rollgate.core.lab.commands import run_command
from rollgate.core.preflight import preflight
from tests.engine.conftest import abort_at_failure, drive, make


async def test_a_binary_logging_database_fails_keystones_expand_in_the_window() -> None:
    """The world rule: without the setting the expand fails with MySQL's error (the run
    stops at a failure gate inside the window); SET GLOBAL lets the next one pass."""
    h = await make(faults=["binlog:hub"])
    try:
        assert await drive(h, abort_at_failure) == "aborted"
        failed = next(e for e in h.events(ev.StepFinished) if e.outcome == "failed")
        world = h.lab.world
        key1 = world.nodes["key1"]
        said: list[str] = []
        trust = "mysql -N -B -e 'SET GLOBAL log_bin_trust_function_creators=1'"
        assert await run_command(world, key1, trust, lambda s, line: said.append(line)) == 0
        again = await run_command(
            world, key1, "keystone-manage db_sync --expand", lambda s, line: said.append(line)
        )
    finally:
        await h.lab.close()
    assert failed.step == "hub/identity/keystone@key1/key1/keystone.db-expand"
    output = [line for e in h.events(ev.StepOutput) if e.step == failed.step for line in e.lines]
    assert output[-1].startswith("ERROR 1419 (HY000) at line 1: You do not have the SUPER")
    assert again == 0, said


async def test_check_blocks_before_the_window_and_passes_once_trusted() -> None:
    h = await make(faults=["binlog:hub"])
    try:
        executor = h.lab.executor()
        findings = await preflight(executor, h.inventory)
        blocked = [f for f in findings if f.check == "keystone triggers"]
        h.lab.world.trusts_function_creators.add("hub")
        allowed = [f for f in await preflight(executor, h.inventory)
                   if f.check == "keystone triggers"]  # fmt: skip
    finally:
        await h.lab.close()
    assert [(f.target, f.ok, f.blocking) for f in blocked] == [("hub/key1", False, True)]
    assert "SET GLOBAL log_bin_trust_function_creators=1" in blocked[0].detail
    assert [(f.ok, f.detail) for f in allowed] == [(True, "allowed (trusts function creators)")]


async def test_glance_takes_its_offline_path_unless_the_inventory_opts_in_to_rolling() -> None:
    """glance's rolling path is EXPERIMENTAL upstream: by default every glance-api stops
    behind a downtime gate, `glance-manage db sync` runs once, each node starts on the new
    code; `glance_rolling: "yes"` keeps the expand/migrate/contract path, whose expand then
    needs the trigger privilege too."""
    h = await make(faults=["binlog:one"])
    try:
        assert await drive(h, lambda g: None) == "complete"  # no glance expand: no triggers
    finally:
        await h.lab.close()
    glance = [s for s in h.plan.steps if s.service == "glance" and s.site == "one"]
    actions = [s.action for s in glance]
    assert "db-sync" in actions and "db-expand" not in actions and "db-contract" not in actions
    stop = next(st for p in h.plan.phases for st in p.stages if st.id == "one/image/glance-offline")
    assert stop.gate is not None and stop.gate.kind == "downtime"
    assert "EXPERIMENTAL upstream" in stop.gate.title and "the image API" in stop.gate.title
    assert actions.index("stop") < actions.index("db-sync") < actions.index("restart")

    rolling = await make(faults=["binlog:one"], recipe={"variables": {"glance_rolling": "yes"}})
    try:
        rolled = [s.action for s in rolling.plan.steps if s.service == "glance"]
        assert await drive(rolling, abort_at_failure) == "aborted"
    finally:
        await rolling.lab.close()
    assert "db-expand" in rolled and "stop" not in rolled
    failed = next(e for e in rolling.events(ev.StepFinished) if e.outcome == "failed")
    assert failed.step.endswith("glance.db-expand")


async def test_check_reads_nova_rpc_pin_on_every_nova_node_before_the_window() -> None:
    """With rpc_pin "check" a nova node without [upgrade_levels] compute=auto would stop the
    compute phase inside the window, after keystone and glance moved: `check` blocks on it
    first; with "set" it says the plan writes it; a node without crudini is named."""
    from rollgate.core.methods.apt.preflight import check_node

    h = await make(faults=["unpinned:one-cmp2"])
    try:
        executor = h.lab.executor()
        nodes = {n.name: n for n in h.inventory.nodes}
        pinned = await check_node(executor, h.inventory, nodes["one-cmp1"])
        unpinned = await check_node(executor, h.inventory, nodes["one-cmp2"])
    finally:
        await h.lab.close()
    assert [(f.check, f.ok) for f in pinned if f.check == "nova RPC pin"] == [
        ("nova RPC pin", True)
    ]
    [pin] = [f for f in unpinned if f.check == "nova RPC pin"]
    assert not pin.ok and pin.blocking
    assert pin.detail.startswith("[upgrade_levels] compute is not set, not auto: the compute")


async def test_check_names_a_nova_node_without_crudini() -> None:
    """The lab's shell answers a command it does not have with 127, as sh does: a node whose
    crudini is missing (here: the recipe names one nobody installed) is named."""
    from rollgate.core.methods.apt.preflight import check_node

    h = await make(recipe={"actions": {"nova:rpc-pin": "no-such-crudini --get nova.conf x y"}})
    try:
        node = next(n for n in h.inventory.nodes if n.name == "one-cmp1")
        inventory = dataclasses.replace(h.inventory, spec=h.inventory.spec.model_copy(
            update={"recipe": RecipeOverrides(actions={"nova:rpc-pin": "no-such-crudini x"})}
        ))  # fmt: skip
        found = await check_node(h.lab.executor(), inventory, node)
    finally:
        await h.lab.close()
    [crudini] = [f for f in found if f.check == "crudini"]
    assert not crudini.ok and "apt-get install crudini" in crudini.detail


async def test_check_names_a_node_that_cannot_switch_to_the_cloud_archive() -> None:
    """The pocket switch runs add-apt-repository, and apt trusts the Cloud Archive with
    ubuntu-cloud-keyring's key: a node without the tool blocks, one without the key is
    warned about, before the window."""
    from rollgate.core.methods.apt.preflight import check_node

    h = await make()
    try:
        files = h.lab.world.nodes["one-cmp3"].files
        del files["/usr/bin/add-apt-repository"]
        del files["/usr/share/keyrings/ubuntu-cloud-keyring.gpg"]
        nodes = {n.name: n for n in h.inventory.nodes}
        bare = await check_node(h.lab.executor(), h.inventory, nodes["one-cmp3"])
        whole = await check_node(h.lab.executor(), h.inventory, nodes["one-cmp2"])
    finally:
        await h.lab.close()
    by = {f.check: f for f in bare}
    assert not by["add-apt-repository"].ok and by["add-apt-repository"].blocking
    assert "apt-get install software-properties-common" in by["add-apt-repository"].detail
    keyring = by["cloud archive keyring"]
    assert not keyring.ok and not keyring.blocking
    assert not {"add-apt-repository", "cloud archive keyring"} & {f.check for f in whole}
