"""Today's apt plan against yesterday's: each rule of the corrected plan, taken away again
(the pre-issue recipe's way) or met by a cloud that breaks it, fails in the lab with the
real tool's message; the corrected plan, on the same cloud, passes or stops where it should."""

from __future__ import annotations

from typing import Any

import pytest

from rollgate.core import events as ev
from rollgate.core.lab.commands import run_command
from tests.engine.conftest import abort_at_failure, drive, make

PRE_ISSUE_INSTALL = "apt-get install --only-upgrade -y {{packages}}"  # no env, no dpkg options
# the corrected install without its policy-rc.d: packages restart what they install
UNBLOCKED_INSTALL = (
    "env DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get install --only-upgrade "
    "-y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold {{packages}}"
)


async def first_failure(
    faults: list[str], recipe: dict[str, Any] | None, target: str | None = None
) -> tuple[str, str, str]:
    """Run the small cloud to its first failed step: (run word, step action, its output)."""
    h = await make(faults=faults, recipe=recipe, auto_approve=True, target=target)
    try:
        word = await drive(h, abort_at_failure, timeout=60)
    finally:
        await h.lab.close()
    failed = [
        e for e in h.events(ev.StepFinished) if e.outcome not in ("ok", "warning", "not needed")
    ]
    if not failed:
        return word, "", ""
    step = h.plan.step(failed[0].step)
    said = " ".join(line for e in h.events(ev.StepOutput) if e.step == step.id for line in e.lines)
    return word, step.action, f"{failed[0].error} {said}"


RULES = [
    pytest.param(  # the target is explicit: without the source switch nothing moves
        [],
        {"actions": {"package-source": None}},
        "verify-version",
        "the package did not move",
        id="no-package-source",
    ),
    pytest.param(  # packages restart services: new code on the old schema, mid-install
        [],
        {"actions": {"upgrade-packages": UNBLOCKED_INSTALL}},
        "upgrade-packages",
        "post-installation script subprocess returned error exit status 1",
        id="restarts-not-blocked",
    ),
    pytest.param(  # dpkg's conffile question, read from no terminal
        ["conffile:key1:keystone"],
        {"actions": {"upgrade-packages": PRE_ISSUE_INSTALL}},
        "upgrade-packages",
        "end of file on stdin at conffile prompt",
        id="conffile-prompt",
    ),
    pytest.param(  # a held package stops apt-get -y
        ["hold:key1:keystone"],
        None,
        "upgrade-packages",
        "Held packages were changed",
        id="held-package",
    ),
    pytest.param(  # the target's own status check knows a blocker the running code does not
        ["target-blocker:keystone"],
        None,
        "status-check",
        "a blocker only 2025.2's own checks know",
        id="target-blocker",
    ),
    pytest.param(  # nova.conf as Ubuntu ships it: no RPC pin while computes lag behind
        ["unpinned:one-cmp1"],
        None,
        "rpc-pin",
        "set [upgrade_levels] compute = auto",
        id="no-rpc-pin",
    ),
    pytest.param(  # a compute that dies after its restart still reads "up" for a minute;
        # its process is gone when the start grace ends
        ["crash:one-cmp1:nova-compute"],
        None,
        "running-version",
        "nova-compute (nova-compute): not-running",
        id="compute-crashes-after-restart",
    ),
]


@pytest.mark.parametrize(("faults", "recipe", "action", "message"), RULES)
async def test_each_rule_fails_in_the_lab_where_it_is_broken(
    faults: list[str], recipe: dict[str, Any] | None, action: str, message: str
) -> None:
    word, failed_action, output = await first_failure(faults, recipe)
    assert word == "aborted", (word, failed_action, output)
    assert failed_action == action, output
    assert message in output


async def test_the_corrected_plan_passes_on_a_cloud_that_breaks_no_rule() -> None:
    word, failed_action, output = await first_failure([], None)
    assert (word, failed_action) == ("complete", ""), output


async def test_a_skip_level_jump_that_rolls_fails_and_the_stopping_plan_passes() -> None:
    """2025.1 -> 2026.1 with no stops at all: the computes' neutron agents may run two
    releases behind the servers (neutron's skip-level multinode grenade jobs run them so, and
    the plan keeps them until their batch), but the contract still needs every server
    stopped; the plan's stops pass."""
    word, action, output = await first_failure([], {"actions": {"stop": None}}, "2026.1")
    assert (word, action) == ("aborted", "db-contract"), output
    assert "contract migrations need every neutron-server stopped" in output
    word, action, output = await first_failure([], None, "2026.1")
    assert (word, action) == ("complete", ""), output


async def test_the_old_plans_checks_pass_on_what_the_new_ones_catch() -> None:
    """Where the old plan only watched (a status check with the running code, "up" as the
    API says it, contract with the servers running), the lab answers as production would."""
    h = await make(faults=["target-blocker:keystone", "crash:one-cmp1:nova-compute"])
    world = h.lab.world
    world.time_scale = 0.01  # a minute of service_down_time is 0.6 s here
    said: list[str] = []

    def out(stream: str, line: str) -> None:
        said.append(line)

    try:
        key1 = world.nodes["key1"]
        assert await run_command(world, key1, "keystone-status upgrade check", out) == 0
        cmp1 = world.nodes["one-cmp1"]
        assert await run_command(world, cmp1, "systemctl restart nova-compute", out) == 0
        record = world.record("one", "one-cmp1", "nova-compute")
        assert record is not None and world.record_state(record) == "up"  # the old check
        assert not world.unit_up(cmp1, "nova-compute")  # ... and the process is gone
        ctl = world.nodes["one-ctl1"]
        await run_command(world, ctl, "add-apt-repository -y cloud-archive:flamingo", out)
        await run_command(world, ctl, "apt-get update", out)
        await run_command(world, ctl, "apt-get install --only-upgrade -y neutron-server", out)
        assert await run_command(world, ctl, "neutron-db-manage upgrade --expand", out) == 0
        assert await run_command(world, ctl, "systemctl restart neutron-server", out) == 0
        said.clear()
        assert await run_command(world, ctl, "neutron-db-manage upgrade --contract", out) == 1
        assert "contract migrations need every neutron-server stopped" in said[-1]
        said.clear()  # Ubuntu runs cinder-api under apache2: the old unit name is not there
        assert await run_command(world, ctl, "systemctl restart cinder-api", out) == 5
        assert "Unit cinder-api.service not found" in said[-1]
    finally:
        await h.lab.close()


async def test_neutron_servers_keep_running_when_no_contract_is_pending() -> None:
    """has_offline_migrations exits 0: the stop, contract and start that would follow are
    'not needed', nothing of them runs, and the run is complete, not 'with deviations'."""
    h = await make(faults=["fail:one-ctl1:neutron-db-manage has_offline_migrations:0"])
    try:
        assert await drive(h, lambda g: None) == "complete"
    finally:
        await h.lab.close()
    conditional = {s.id for s in h.plan.steps if "when" in s.args and s.site == "one"}
    finished = {e.step: e for e in h.events(ev.StepFinished) if e.step in conditional}
    assert conditional and all(e.outcome == "not needed" for e in finished.values())
    assert "found nothing to do" in next(iter(finished.values())).error
    started = {e.step for e in h.events(ev.StepStarted)}
    assert not conditional & started  # never ran: the servers were not stopped
    other_site = {s.id for s in h.plan.steps if "when" in s.args and s.site == "two"}
    assert all(  # two's check found contract migrations pending: its servers stopped
        e.outcome == "ok" for e in h.events(ev.StepFinished) if e.step in other_site
    )


async def test_a_compute_that_never_reports_fails_its_check_at_the_heartbeat_limit() -> None:
    """A dead compute shows within policy.heartbeat_timeout, not the step timeout (half an
    hour by default): the failure gate opens while the window still has room."""
    h = await make(  # what runs is not read: the heartbeat wait is the check that tells
        faults=["crash:one-cmp1:nova-compute"],
        policy={"step_timeout": 600, "heartbeat_timeout": 0.5},
        recipe={"actions": {"running-version": None}},
    )
    try:
        word = await drive(h, abort_at_failure, timeout=60)  # the step timeout would be 600 s
    finally:
        await h.lab.close()
    failed = [e for e in h.events(ev.StepFinished) if e.outcome == "timed_out"]
    assert word == "aborted" and [h.plan.step(e.step).action for e in failed] == ["wait-compute-up"]
    assert "no heartbeat within 0.5s: policy.heartbeat_timeout" in failed[0].error
