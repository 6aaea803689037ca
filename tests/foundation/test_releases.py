"""Release lookup and which upgrade paths are accepted, refused, and what is suggested."""

from __future__ import annotations

import pytest

from rollgate.core.releases import (
    CATALOGUE,
    ReleaseError,
    find_release,
    release_for_major,
    validate_path,
)


@pytest.mark.parametrize("text", ["2025.1", "epoxy", "EPOXY", " Epoxy ", 2025.1])
def test_release_by_id_or_name_any_case(text: object) -> None:
    assert find_release(text).id == "2025.1"  # type: ignore[arg-type]


def test_unknown_release_lists_the_known_ones() -> None:
    with pytest.raises(ReleaseError, match=r"unknown release 'zed'; known releases: 2023.1"):
        find_release("zed")


@pytest.mark.parametrize(
    ("src", "dst", "skip"),
    [
        ("2025.1", "2025.2", False),
        ("2025.2", "2026.1", False),
        ("2024.1", "2025.1", True),
        ("2025.1", "2026.1", True),
        ("2023.1", "2024.1", True),
    ],
)
def test_supported_paths(src: str, dst: str, skip: bool) -> None:
    path = validate_path(find_release(src), find_release(dst))
    assert path.skip_level is skip


@pytest.mark.parametrize(
    ("src", "dst", "hops"),
    [
        ("2024.1", "2026.1", "2024.1 -> 2025.1 -> 2026.1"),
        ("2023.2", "2025.1", "2023.2 -> 2024.1 -> 2025.1"),
        ("2024.2", "2026.1", "2024.2 -> 2025.1 -> 2026.1"),
        ("2023.1", "2026.2", "2023.1 -> 2024.1 -> 2025.1 -> 2026.1 -> 2026.2"),
        ("2025.2", "2026.2", "2025.2 -> 2026.1 -> 2026.2"),
    ],
)
def test_unsupported_paths_suggest_the_fast_forward(src: str, dst: str, hops: str) -> None:
    with pytest.raises(ReleaseError) as caught:
        validate_path(find_release(src), find_release(dst))
    assert (
        f"upgrade one step at a time instead: {hops} (skip-level upgrades go from a SLURP "
        "release to the next: 2023.1 -> 2024.1, 2024.1 -> 2025.1, 2025.1 -> 2026.1)"
        in str(caught.value)
    )


def test_non_slurp_cannot_skip() -> None:
    with pytest.raises(ReleaseError, match="not a supported upgrade"):
        validate_path(find_release("2025.2"), find_release("2026.2"))


def test_downgrade_and_no_op_are_refused() -> None:
    with pytest.raises(ReleaseError, match="is a downgrade"):
        validate_path(find_release("2026.1"), find_release("2025.1"))
    with pytest.raises(ReleaseError, match="nothing to upgrade"):
        validate_path(find_release("2026.1"), find_release("gazpacho"))


def test_package_majors_map_back_to_releases() -> None:
    for release in CATALOGUE:
        for service, major in release.majors.items():
            assert release_for_major(service, major) == release
    assert release_for_major("nova", 99) is None
