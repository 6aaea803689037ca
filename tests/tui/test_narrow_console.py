"""A narrow console keeps what matters: the header drops the run id, the operator and the
time elapsed before the state, the window and the estimate; the gate bar keeps the failed step,
its command and its last output."""

from __future__ import annotations

from rollgate.tui.widgets.run_header import Piece, fit

PIECES = [
    Piece("prod-east", 60),
    Piece("  2025.2 -> 2026.1", 50),
    Piece("  run 20261205-101500-prod-east", 10),
    Piece("  ▶ running", 90),
    Piece("  elapsed 1:02:03", 40),
    Piece("  window left 2h10m", 80),
    Piece("  ~1h05m of work left", 75),
    Piece("  operator kim", 30),
    Piece("  attached: kim, lee", 20),
]


def test_at_200_columns_everything_shows() -> None:
    assert fit(PIECES, 200).plain == "".join(p.text for p in PIECES)


def test_at_120_columns_the_run_id_and_who_is_attached_go_first() -> None:
    shown = fit(PIECES, 120).plain
    assert "run 2026" not in shown and "attached" not in shown
    assert "window left 2h10m" in shown and "~1h05m of work left" in shown
    assert "▶ running" in shown and "operator kim" in shown


def test_at_80_columns_state_window_and_estimate_stay_in_order() -> None:
    shown = fit(PIECES, 80).plain
    assert shown == "prod-east  2025.2 -> 2026.1  ▶ running  window left 2h10m  ~1h05m of work left"
    assert len(shown) <= 80


def test_at_40_columns_the_state_is_the_last_to_go() -> None:
    assert fit(PIECES, 40).plain == "  ▶ running  window left 2h10m"


GATE = """✘ restart nova-compute on two-cmp2: failed
  command: systemctl restart nova-compute
  exit status 1
  | systemctl: injected failure (lab fault), exit 1
  | Job for nova-compute.service failed
done so far: 251/409 steps, 1 failed, 2 warnings acknowledged; next: the rest of the phase"""


def test_a_short_gate_bar_keeps_the_failed_step_its_command_and_its_last_output() -> None:
    """80x24 leaves the gate three lines: what a decision needs, and where the rest is."""
    from rollgate.tui.widgets.gate_bar import gate_summary

    assert gate_summary(GATE, 3, room=60).splitlines() == [
        "✘ restart nova-compute on two-cmp2: failed  (+3 lines: d)",
        "  command: systemctl restart nova-compute",
        "  | Job for nova-compute.service failed",
    ]
    assert gate_summary(GATE, 8) == GATE + "\n"  # room for all: all, in order


def test_d_at_a_sites_failure_gate_opens_that_sites_failed_node() -> None:
    """Two sites' computes failed; the gate of site two's phase is open: d is about two's
    node, not the first failed node of the whole cloud."""
    from types import SimpleNamespace

    from rollgate.core.inventory import load_inventory
    from rollgate.core.plan import build_plan
    from rollgate.core.state import fold
    from rollgate.tui.app import failed_nodes_of
    from tests.engine.conftest import SMALL

    plan = build_plan(load_inventory(SMALL))
    state = fold(plan, [])
    for node in ("one-cmp4", "two-cmp2"):
        step = next(s for s in plan.steps if s.node == node and s.action == "restart")
        state.steps[step.id].status = "failed"
    gate = SimpleNamespace(id="gate:failures:two/compute:1148")
    assert failed_nodes_of(plan, state, gate) == ["two-cmp2"]
