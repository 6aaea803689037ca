"""A journal's plan is read back a phase at a time where its header says where the phases lie,
and is the same plan as one read whole."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from rollgate.core.client import journal_plan, open_journal_client
from rollgate.core.inventory import load_inventory
from rollgate.core.journal import JournalDamaged, read_header
from rollgate.core.plan import (
    PlanJSON,
    build_plan,
    header_answer,
    plan_digest,
    plan_from_record,
    plan_record,
    split_header_answer,
)
from tests.sample_run import INVENTORY, SHIPPED


@pytest.mark.parametrize("inventory", [INVENTORY, "sample_inventory/multisite-apt.yaml"])
def test_a_plan_read_a_phase_at_a_time_is_the_plan(inventory: str) -> None:
    plan = build_plan(load_inventory(inventory))
    record, layout = plan_record(plan)
    assert orjson.loads(record) == plan.to_dict()  # the record is the plan's, whole
    again = plan_from_record(memoryview(record), layout)
    assert again == plan and plan_digest(again) == plan.digest


def test_the_control_sockets_header_answer_gives_the_plan_a_phase_at_a_time() -> None:
    """An attaching console reads the run's plan from the engine's answer by its layout, as a
    replay reads a journal's, not as 100 MB of JSON parsed whole; text elsewhere in the
    header that looks like the layout or the plan's key does not mislead it."""
    plan = build_plan(load_inventory("sample_inventory/multisite-apt.yaml"))
    header = {"run_id": "r1", "inventory": 'x,"plan":{"plan_layout":{}}', "plan": PlanJSON(plan)}
    line = orjson.dumps(header_answer(header)) + b"\n"
    read, record = split_header_answer(line)
    assert record is not None
    assert plan_from_record(record, read.pop("plan_layout")) == plan
    assert read == {"run_id": "r1", "inventory": 'x,"plan":{"plan_layout":{}}'}


def test_a_header_answer_with_its_plan_elsewhere_is_read_whole() -> None:
    """An engine that sends the plan inside the header (as before the layout came first)."""
    plan = build_plan(load_inventory(INVENTORY))
    line = orjson.dumps({"run_id": "r1", "plan": plan.to_dict(), "after": 1}) + b"\n"
    read, record = split_header_answer(line)
    assert record is None and read["run_id"] == "r1" and read["after"] == 1
    assert read["plan"] == plan.to_dict()


def test_a_console_reads_its_plan_from_the_run_journal_only_when_it_is_that_runs(
    tmp_path: Path,
) -> None:
    """An attaching console takes the plan from the run's journal when it may read it and the
    journal is the run the engine describes; else (unreadable, another run's, another plan)
    nothing, and it asks the engine."""
    header = read_header(SHIPPED)
    plan = journal_plan(SHIPPED, header)
    assert plan is not None and plan.digest == header["plan_digest"]
    assert plan == open_journal_client(str(SHIPPED)).plan
    assert journal_plan(SHIPPED, {**header, "plan_digest": "0" * 64}) is None
    assert journal_plan(SHIPPED, {**header, "run_id": "another"}) is None
    assert journal_plan(tmp_path / "journal.jsonl", header) is None  # cannot be read
    torn = tmp_path / "torn.jsonl"
    torn.write_bytes(SHIPPED.read_bytes()[:5000])  # its header cut short
    assert journal_plan(torn, header) is None


def shareable(value: object) -> bool:
    """A value Sharing keeps one copy of: a text, or a table whose values can be keys."""
    if not isinstance(value, dict):
        return True
    try:
        hash(tuple(value.items()))
    except TypeError:
        return False
    return True


def test_a_plan_read_back_holds_one_copy_of_each_command_title_and_argument_table() -> None:
    """A thousand computes run the same commands: read back from a journal, equal ones are one
    object (a replay of 10 x 1,000 held 94 commands 161,089 times); a table holding a list
    or a table is kept as it is."""
    plan = build_plan(load_inventory("sample_inventory/multisite-apt.yaml"))
    record, layout = plan_record(plan)
    again = plan_from_record(memoryview(record), layout)
    assert again == plan
    for field in ("command", "title", "args"):
        first: dict[bytes, object] = {}
        repeated = 0
        for step in again.steps:
            value = getattr(step, field)
            key = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
            if key in first and shareable(value):
                assert value is first[key], (field, step.id)
                repeated += 1
            first.setdefault(key, value)
        assert repeated, f"no {field} repeats: the test would prove nothing"


def test_the_shipped_journal_opens_its_plan_by_its_layout_as_the_whole_read_would() -> None:
    client = open_journal_client(str(SHIPPED))
    assert "plan_layout" in client.header and "plan" not in client.header  # read by layout
    assert client.plan == build_plan(load_inventory(INVENTORY))
    assert client.index.plan_record is None  # the header line is not kept


def test_a_layout_that_lies_falls_back_to_reading_the_header_whole(tmp_path: Path) -> None:
    head, _, rest = SHIPPED.read_bytes().partition(b"\n")
    header = orjson.loads(head)
    header.pop("crc")  # an unsealed copy, so the edit below is not refused as damage
    header["format"] = "rollgate.journal/1"
    header["plan_layout"]["length"] -= 7
    copy = tmp_path / "journal.jsonl"
    events = [orjson.loads(line) for line in rest.splitlines()]
    for event in events:
        event.pop("crc")
    copy.write_bytes(b"\n".join(orjson.dumps(x) for x in [header, *events]) + b"\n")
    assert open_journal_client(str(copy)).plan == build_plan(load_inventory(INVENTORY))


def test_a_flipped_bit_in_the_plan_is_caught_though_the_plan_is_not_parsed_whole(
    tmp_path: Path,
) -> None:
    data = bytearray(SHIPPED.read_bytes())
    at = data.index(b'"phases":[') + 40  # inside the first phase
    data[at] ^= 0x01
    copy = tmp_path / "journal.jsonl"
    copy.write_bytes(bytes(data))
    with pytest.raises(JournalDamaged, match="header is damaged"):
        open_journal_client(str(copy))
