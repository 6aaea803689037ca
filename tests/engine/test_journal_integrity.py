"""A journal that notices damage: a flipped bit anywhere in a line, a line lost or repeated, is
named with its line and run by every reader (replay, report, resume, watch), which stops there
and leaves the whole part before it in `<journal>.recovered`."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from rollgate.core.client import open_journal_client
from rollgate.core.journal import JournalDamaged, read_journal
from rollgate.core.report import build_report
from rollgate.core.state import fold
from rollgate.core.timeline import journal_timeline
from tests.cli_helpers import rollgate
from tests.sample_run import INVENTORY, SHIPPED

LINES = SHIPPED.read_bytes().split(b"\n")[:-1]  # every line ends with a newline


def twelve_flips() -> list[tuple[int, int, int]]:
    """(line, byte, bit): the header, the first and last events, and lines between, each at a
    random byte of the line (its newline included) and a random bit."""
    pick = random.Random(33)
    numbers = [1, 2, len(LINES), *sorted(pick.sample(range(3, len(LINES)), 9))]
    flips = []
    for number in numbers:
        length = len(LINES[number - 1]) + 1  # the newline is the line's too
        flips.append((number, pick.randrange(length), pick.randrange(8)))
    return flips


def damaged_copy(tmp_path: Path, number: int, byte: int, bit: int) -> Path:
    data = bytearray(SHIPPED.read_bytes())
    start = sum(len(line) + 1 for line in LINES[: number - 1])
    data[start + byte] ^= 1 << bit
    path = tmp_path / "journal.jsonl"
    path.write_bytes(bytes(data))
    return path


def replay_reads(path: Path) -> None:
    client = open_journal_client(str(path))
    fold(client.plan, client.index)


def report_reads(path: Path) -> None:
    client = open_journal_client(str(path))
    build_report(client.plan, client.header, client.all_events())


def seek_reads(path: Path) -> None:
    """The replay console's way: a timeline folding the journal a block of events at a time."""
    client = open_journal_client(str(path))
    journal_timeline(client.plan, client.index).view_at(len(client.index))


READERS = {
    "replay": replay_reads,
    "seek": seek_reads,
    "report": report_reads,
    "resume": read_journal,
}


@pytest.mark.parametrize("flip", twelve_flips(), ids=lambda f: f"line{f[0]}-byte{f[1]}-bit{f[2]}")
@pytest.mark.parametrize("reader", list(READERS))
def test_a_flipped_bit_anywhere_is_named_with_its_line(
    tmp_path: Path, reader: str, flip: tuple[int, int, int]
) -> None:
    number = flip[0]
    path = damaged_copy(tmp_path, *flip)
    with pytest.raises(JournalDamaged) as caught:
        READERS[reader](path)
    message = str(caught.value)
    where = "the journal's header is damaged" if number == 1 else "damaged record in run"
    assert message.startswith(f"{path}:{number}: {where}"), message
    if number > 1:
        copy = read_journal(path.with_name("journal.jsonl.recovered"))  # whole, and verified
        assert len(copy.events) == number - 2


@pytest.mark.parametrize(
    ("change", "number", "says"),
    [("lose", 100, "records are missing"), ("repeat", 101, "records are repeated")],
)
def test_a_line_lost_or_repeated_is_named(
    tmp_path: Path, change: str, number: int, says: str
) -> None:
    lines = list(LINES)
    if change == "lose":
        del lines[99]
    else:
        lines.insert(100, lines[99])
    path = tmp_path / "journal.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    for read in READERS.values():
        with pytest.raises(JournalDamaged, match=rf":{number}: damaged record in run .*{says}"):
            read(path)


@pytest.mark.integration
def test_replay_report_and_resume_say_it_in_one_line(tmp_path: Path) -> None:
    number, byte, bit = twelve_flips()[5]
    path = damaged_copy(tmp_path, number, byte, bit)
    state = tmp_path / "state"
    for args in (
        ["replay", str(path), "--headless"],
        ["report", str(path)],
        ["run", str(INVENTORY), "--headless", "--lab-inprocess", "--resume", str(path)],
    ):
        out = rollgate(state, *args)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {path}:{number}: damaged record")
        assert "rollgate replay" in lines[0] and "Traceback" not in out.stderr
    copy = path.with_name("journal.jsonl.recovered")
    assert rollgate(state, "replay", str(copy), "--headless").returncode == 0


def test_the_shipped_journals_carry_their_integrity_checks() -> None:
    assert read_journal(SHIPPED).header["format"] == "rollgate.journal/2"
