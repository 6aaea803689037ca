"""What each release's code says about itself, read from the projects' own trees at their
release tags: the newest API microversions, nova's service version, and each database's schema
heads. Checks compare what the running cloud answers with these, never only print it.

Sources (git tags of the openstack/<project> repositories, e.g. nova 33.0.0 is 2026.1):
- compute: nova/api/openstack/api_version_request.py `_MAX_API_VERSION`;
  nova service version: nova/objects/service.py `SERVICE_VERSION`;
- placement: placement/microversion.py, the last entry of `VERSIONS`;
- volume: cinder/api/openstack/api_version_request.py `_MAX_API_VERSION`;
- schema heads: the alembic revisions no other revision names as its down_revision, in
  keystone/common/sql/migrations/versions, glance/db/sqlalchemy/alembic_migrations/versions,
  placement/db/sqlalchemy/alembic/versions, nova/db/main/migrations/versions (nova) and
  nova/db/api/migrations/versions (nova_api), neutron/db/migration/alembic_migrations/versions,
  cinder/db/migrations/versions.
2026.2 is not released: nothing is known of it yet, and checks say so instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ReleaseFacts:
    compute_microversion: str  # the newest compute (nova) API microversion
    placement_microversion: str
    volume_microversion: str  # block storage (cinder) v3
    nova_service_version: int  # what nova services of this code write in `services.version`
    # database (nova's two: nova, nova_api) -> branch -> its alembic head at the release;
    # keystone, glance and neutron have an expand and a contract branch, the others one
    schema_heads: dict[str, dict[str, str]] = field(default_factory=dict)


def _split(expand: str, contract: str) -> dict[str, str]:
    return {"expand": expand, "contract": contract}


def _one(head: str) -> dict[str, str]:
    return {"head": head}


FACTS: dict[str, ReleaseFacts] = {
    "2023.1": ReleaseFacts("2.95", "1.39", "3.70", 66, {
        "keystone": _split("29e87d24a316", "e25ffa003242"),
        "glance": _split("2023_1_expand01", "2023_1_contract01"),
        "placement": _one("422ece571366"),
        "nova": _one("960aac0e09ea"), "nova_api": _one("b30f573d3377"),
        "neutron": _split("fc153938cdc1", "5c85685d616d"),
        "cinder": _one("daa98075b90d"),
    }),
    "2023.2": ReleaseFacts("2.95", "1.39", "3.70", 66, {
        "keystone": _split("11c3b243b4cb", "c88cdce8f248"),
        "glance": _split("2023_1_expand01", "2023_1_contract01"),
        "placement": _one("a082b8bb98d0"),
        "nova": _one("1acf2c98e646"), "nova_api": _one("cdeec0c85668"),
        "neutron": _split("89c58a70ceba", "5c85685d616d"),
        "cinder": _one("89aa6f9639f9"),
    }),
    "2024.1": ReleaseFacts("2.96", "1.39", "3.71", 67, {
        "keystone": _split("47147121", "c88cdce8f248"),
        "glance": _split("2024_1_expand01", "2024_1_contract01"),
        "placement": _one("a082b8bb98d0"),
        "nova": _one("13863f4e1612"), "nova_api": _one("cdeec0c85668"),
        "neutron": _split("0e6eff810791", "5c85685d616d"),
        "cinder": _one("9c74c1c6971f"),
    }),
    "2024.2": ReleaseFacts("2.96", "1.39", "3.71", 67, {
        "keystone": _split("47147121", "c88cdce8f248"),
        "glance": _split("2024_1_expand01", "2024_1_contract01"),
        "placement": _one("a082b8bb98d0"),
        "nova": _one("13863f4e1612"), "nova_api": _one("cdeec0c85668"),
        "neutron": _split("5bcb7b31ec7d", "5c85685d616d"),
        "cinder": _one("9c74c1c6971f"),
    }),
    "2025.1": ReleaseFacts("2.100", "1.39", "3.71", 68, {
        "keystone": _split("47147121", "c88cdce8f248"),
        "glance": _split("2024_1_expand01", "2024_1_contract01"),
        "placement": _one("a082b8bb98d0"),
        "nova": _one("2903cd72dc14"), "nova_api": _one("cdeec0c85668"),
        "neutron": _split("ad80a9f07c5c", "5c85685d616d"),
        "cinder": _one("9c74c1c6971f"),
    }),
    "2025.2": ReleaseFacts("2.100", "1.39", "3.71", 70, {
        "keystone": _split("e8725d6fa226", "c88cdce8f248"),
        "glance": _split("2024_1_expand01", "2024_1_contract01"),
        "placement": _one("a082b8bb98d0"),
        "nova": _one("2903cd72dc14"), "nova_api": _one("cdeec0c85668"),
        "neutron": _split("d553edeb540f", "5c85685d616d"),
        "cinder": _one("9c74c1c6971f"),
    }),
    "2026.1": ReleaseFacts("2.103", "1.39", "3.71", 72, {
        "keystone": _split("742c857f1dfb", "c88cdce8f248"),
        "glance": _split("2024_1_expand01", "2024_1_contract01"),
        "placement": _one("a082b8bb98d0"),
        "nova": _one("2903cd72dc14"), "nova_api": _one("cdeec0c85668"),
        "neutron": _split("b1bca967e19d", "5c85685d616d"),
        "cinder": _one("9c74c1c6971f"),
    }),
}  # fmt: skip

# The databases whose schema a service's migrations move (nova has two)
# Databases whose contract revisions depend on their release's expand revision (glance's
# 2024_1_contract01 has depends_on = '2024_1_expand01'): alembic keeps one row for the pair,
# so the tool prints only the contract head when both branches are at one release (seen on
# the acceptance cloud: `glance-manage db version` prints 2024_1_contract01 alone)
DEPENDENT_CONTRACT = frozenset({"glance"})

DATABASES_OF: dict[str, tuple[str, ...]] = {
    "keystone": ("keystone",),
    "glance": ("glance",),
    "placement": ("placement",),
    "nova": ("nova", "nova_api"),
    "neutron": ("neutron",),
    "cinder": ("cinder",),
}

# Which API answers each microversion, and the service type openstacksdk knows it by
MICROVERSIONED = {"compute": "compute", "placement": "placement", "volume": "block-storage"}


def facts(release_id: str) -> ReleaseFacts | None:
    """What release `release_id`'s code says about itself, when it is known."""
    return FACTS.get(release_id)


def newest_microversion(release_id: str, api: str) -> str | None:
    found = FACTS.get(release_id)
    return getattr(found, f"{api}_microversion") if found is not None else None
