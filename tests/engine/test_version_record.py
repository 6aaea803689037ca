"""The end of a run states each node's versions before and after, package by package, as the
run's own checks read them on the node."""

from __future__ import annotations

import re

from rollgate.core import events as ev
from rollgate.core.releases import release_for_major
from rollgate.core.report import end_summary, version_changes
from tests.engine.conftest import abort_at_failure, drive, make


def release_of(service_major: str, package: str) -> str:
    major = re.match(r"^(?:\d+:)?(\d+)\.", service_major)
    assert major, service_major
    service = package.split("-")[0]
    release = release_for_major(service, int(major.group(1)))
    assert release is not None, (package, service_major)
    return release.id


async def test_every_package_is_read_before_it_moves_and_after() -> None:
    h = await make()
    try:
        assert await drive(h, lambda g: None) == "complete"
    finally:
        await h.lab.close()
    changes = version_changes(h.engine.state)
    assert {c["package"] for c in changes} >= {"keystone", "nova-compute", "cinder-volume"}
    for change in changes:
        assert release_of(change["before"], change["package"]) == "2025.1", change
        assert release_of(change["after"], change["package"]) == "2025.2", change
    computes = next(c for c in changes if c["package"] == "nova-compute")
    assert len(computes["nodes"]) == 8  # one-cmp[1:5], two-cmp[1:3]
    summary = "\n".join(end_summary(h.plan, h.engine.state))
    assert "nova-compute on one-cmp[1:5],two-cmp[1:3]: 3:31.1.0" in summary


async def test_a_package_that_did_not_move_says_so() -> None:
    h = await make(recipe={"actions": {"package-source": None}})

    try:
        assert await drive(h, abort_at_failure) == "aborted"
    finally:
        await h.lab.close()
    keystone = next(c for c in version_changes(h.engine.state) if c["package"] == "keystone")
    assert keystone["before"] == keystone["installed"]  # the install found nothing newer
    assert keystone["after"] == "not read"  # it never restarted: what runs was not read
    summary = "\n".join(end_summary(h.plan, h.engine.state))
    assert "(did not move)" in summary
    # aborted after key1's install blocked restarts: the end of the run allowed them again
    allowed = h.events(ev.CleanupDone)
    assert [(e.node, e.what, e.ok) for e in allowed] == [
        ("key1", "package restarts allowed again", True)
    ]
    assert "/usr/sbin/policy-rc.d" not in h.lab.world.nodes["key1"].files
    assert "still blocked" not in summary


async def test_a_node_whose_restarts_cannot_be_allowed_again_is_named() -> None:
    h = await make(
        faults=["fail:key1:rm -f /usr/sbin/policy-rc.d"],
        recipe={"actions": {"package-source": None}},
    )

    try:
        assert await drive(h, abort_at_failure) == "aborted"
    finally:
        await h.lab.close()
    allowed = h.events(ev.CleanupDone)
    assert [(e.node, e.ok) for e in allowed] == [("key1", False)]
    summary = "\n".join(end_summary(h.plan, h.engine.state))
    assert "package restarts still blocked (policy-rc.d) on key1" in summary


async def test_a_policy_rc_d_the_node_already_had_is_kept_and_put_back() -> None:
    """A site's own policy-rc.d is set aside before Rollgate's blocks restarts, and is back,
    unchanged, when restarts are allowed again: both at the plan's own step (key1, finished)
    and at the clean-up of a run that ends part-way (its resume writes Rollgate's again)."""
    site_policy = "#!/bin/sh\n# site policy: no restarts of haproxy by packages\nexit 0\n"
    h = await make()
    try:
        for node in h.lab.world.nodes.values():
            node.files["/usr/sbin/policy-rc.d"] = site_policy
        assert await drive(h, lambda g: None) == "complete"
        files = [n.files for n in h.lab.world.nodes.values()]
    finally:
        await h.lab.close()
    assert all(f.get("/usr/sbin/policy-rc.d") == site_policy for f in files)
    assert not any("/usr/sbin/policy-rc.d.rollgate-saved" in f for f in files)
    # while the packages were installed, Rollgate's own blocked the restarts
    installs = [e for e in h.events(ev.StepFinished) if e.step.endswith("upgrade-packages")]
    assert installs and all(e.outcome == "ok" for e in installs)


async def test_a_run_that_ends_part_way_puts_the_site_policy_back() -> None:
    site_policy = "#!/bin/sh\n# site policy\nexit 0\n"
    h = await make(recipe={"actions": {"package-source": None}})
    try:
        h.lab.world.nodes["key1"].files["/usr/sbin/policy-rc.d"] = site_policy
        assert await drive(h, abort_at_failure) == "aborted"
        files = h.lab.world.nodes["key1"].files
    finally:
        await h.lab.close()
    assert [(e.node, e.ok) for e in h.events(ev.CleanupDone)] == [("key1", True)]
    assert files.get("/usr/sbin/policy-rc.d") == site_policy
