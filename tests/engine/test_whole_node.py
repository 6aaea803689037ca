"""apt: a node moves whole from the pocket after its last service install (libraries, Open
vSwitch, libvirt), what moved beyond the named packages is in the change record, and a package
left behind is a deviation of the final verification."""

from __future__ import annotations

from rollgate.core import events as ev
from rollgate.core.report import build_report, moved_beyond
from rollgate.core.words import RUN_DEVIATIONS
from tests.engine.conftest import make


async def test_every_package_of_the_pocket_moves_and_the_report_lists_the_extra_ones() -> None:
    h = await make()
    assert await h.engine.run() == "complete"
    target = h.inventory.upgrade.target
    cmp1 = h.lab.world.nodes["one-cmp1"]
    assert cmp1.packages["libvirt-daemon-system"] == target  # not a service's package
    assert cmp1.packages["openvswitch-switch"] == target
    beyond = moved_beyond(h.plan, h.engine.state)
    assert set(beyond["one-cmp1"]) == {"libvirt-daemon-system", "openvswitch-switch",
                                       "python3-oslo.messaging"}  # fmt: skip
    assert set(beyond["one-ctl1"]) == {"python3-oslo.messaging"}
    report = build_report(h.plan, {"run_id": "t"}, list(h.engine.history))
    assert report["moved_beyond"] == beyond
    # the node's rest moves once, after its last install and before its restarts
    steps = [s for s in h.plan.steps if s.node == "one-ctl1"]
    actions = [s.action for s in steps]
    assert actions.count("upgrade-node") == 1
    last_install = max(i for i, a in enumerate(actions) if a == "upgrade-packages")
    assert actions.index("upgrade-node") > last_install
    assert steps[last_install].site == steps[actions.index("upgrade-node")].site


async def test_a_package_kept_back_is_a_deviation_naming_it() -> None:
    h = await make(faults=["hold:one-cmp2:openvswitch-switch"])
    assert await h.engine.run() == RUN_DEVIATIONS
    found = [
        e for e in h.events(ev.StepFinished)
        if e.outcome == "deviation" and e.step.endswith("/one-cmp2/nova.left-behind")
    ]  # fmt: skip
    assert len(found) == 1
    # apt keeps a held package back: no Inst line, but it says so, and counts it
    assert (
        "one-cmp2: 2 line(s) say otherwise: The following packages have been kept back:; "
        "0 upgraded, 0 newly installed, 0 to remove and 1 not upgraded." in found[0].error
    )
    assert h.lab.world.nodes["one-cmp2"].packages["openvswitch-switch"] == (
        h.inventory.upgrade.source
    )
