"""Every malformed inventory in the corpus is refused with exactly the message it pins."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollgate.core.inventory import InventoryError, load_inventory

HERE = Path(__file__).parent / "inventory"
CORPUS = sorted((HERE / "bad").glob("*.yaml"))


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 25


def test_base_inventory_is_valid() -> None:
    inv = load_inventory(HERE / "base.yaml")
    assert [s.name for s in inv.sites] == ["central", "east"]
    assert [n.name for n in inv.site("east").nodes] == ["cmp01", "cmp02", "cmp03", "cmp04", "ctl1"]


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_malformed_inventory_gives_its_exact_message(path: Path) -> None:
    expected = [
        line.removeprefix("# expect: ").replace("{file}", str(path))
        for line in path.read_text().splitlines()
        if line.startswith("# expect: ")
    ]
    assert expected, f"{path.name} pins no message"
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    assert [str(p) for p in caught.value.problems] == expected


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InventoryError) as caught:
        load_inventory(tmp_path / "nope.yaml")
    assert (
        str(caught.value)
        == f"{tmp_path / 'nope.yaml'}: no such file; check the path to the inventory"
    )


@pytest.mark.parametrize("where", ["loop", "/dev/zero"])
def test_a_symlink_loop_or_an_endless_file_is_a_clear_error(tmp_path: Path, where: str) -> None:
    path = Path(where)
    if where == "loop":
        path = tmp_path / "loop.yaml"
        path.symlink_to(path)
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert ("symbolic links" in str(caught.value)) == (where == "loop")
