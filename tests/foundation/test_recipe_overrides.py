"""Inventories can change what a step runs, for the whole cloud or one site."""

from __future__ import annotations

import shlex

import pytest

from rollgate.core.inventory import InventoryError, parse_inventory
from rollgate.core.plan import build_plan

BASE = """
cloud: ov
upgrade: {from: "2025.1", to: "2025.2"}
shared: {identity: {site: hub}}
recipe:
  variables: {backup_dir: "/srv/my backups"}
  actions:
    nova:online-migrations: nova-manage db online_data_migrations --max-count 50
sites:
  hub:
    nodes: [{name: k1, address: 10.0.0.1, roles: [keystone]}]
  one:
    recipe:
      actions: {db-backup: null}
    nodes: [{name: c1, address: 10.0.0.2, roles: [nova-conductor, nova-api, glance-api]}]
"""


def test_cloud_and_site_overrides_change_the_commands() -> None:
    plan = build_plan(parse_inventory(BASE, "ov.yaml"))
    backups = [s for s in plan.steps if s.action == "db-backup"]
    assert [s.site for s in backups] == ["hub"]  # site one backs up outside Rollgate
    words = shlex.split(backups[0].command)  # the space is quoted, not a word break
    assert "--result-file=/srv/my backups/ov-keystone-2025.1-{{run_id}}.sql" in words
    assert words[:5] == ["install", "-d", "-m", "0700", "/srv/my backups"]
    online = next(s for s in plan.steps if s.action == "online-migrations" and s.service == "nova")
    assert online.command == "nova-manage db online_data_migrations --max-count 50"
    assert online.exit_codes == {0: "ok", 1: "repeat", 2: "failed"}  # meaning kept


def test_an_unknown_action_is_refused_with_its_line() -> None:
    with pytest.raises(InventoryError) as caught:
        parse_inventory(BASE.replace("db-backup: null", "db-bakup: null"), "ov.yaml")
    assert str(caught.value) == (
        "ov.yaml:14: sites.one.recipe.actions.db-bakup: the apt recipe has no action "
        "'db-bakup'; did you mean 'db-backup'?; see core/methods/apt/recipe.yaml"
    )
