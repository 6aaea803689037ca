"""`rollgate import kolla|osa`: the inventories operators keep, in the upstream layouts, become
Rollgate inventories that validate, with every host of the source and what was left out said."""

from __future__ import annotations

from pathlib import Path

import yaml

from rollgate.core.importers.kolla import import_kolla
from rollgate.core.inventory import load_inventory
from tests.cli_helpers import rollgate

HERE = Path(__file__).with_name("imports")


def test_import_kolla_writes_an_inventory_that_validates(tmp_path: Path) -> None:
    out = tmp_path / "kolla.yaml"
    done = rollgate(
        tmp_path / "state", "import", "kolla", str(HERE / "kolla" / "multinode"),
        "--globals", str(HERE / "kolla" / "globals.yml"), "--to", "2026.1", "-o", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "10 hosts from" in done.stdout and "2025.2 (Flamingo) -> 2026.1" in done.stdout
    validated = rollgate(tmp_path / "state", "validate", str(out))
    assert validated.returncode == 0 and ": ok: cloud kolla," in validated.stdout, validated.stderr
    inv = load_inventory(out)
    assert inv.method == "kolla" and inv.upgrade.source.id == "2025.2"  # globals' release
    nodes = {n.name: n for n in inv.nodes}
    assert sorted(nodes) == [
        "cmp001", "cmp002", "cmp003", "cmp004", "ctl01", "ctl02", "ctl03", "localhost",
        "net01", "stor01",
    ]  # fmt: skip
    assert nodes["ctl02"].address == "10.20.0.2" and nodes["cmp003"].address == "cmp003"
    assert nodes["localhost"].roles == ("deployment",) and nodes["localhost"].address == "127.0.0.1"
    assert set(nodes["ctl01"].roles) >= {"keystone", "nova-api", "neutron-server", "cinder-api",
                                         "database", "horizon"}  # fmt: skip
    assert nodes["cmp001"].roles == ("nova-compute", "neutron-l2-agent")
    agents = {"neutron-l2-agent", "neutron-l3-agent", "neutron-dhcp-agent",
              "neutron-metadata-agent"}  # fmt: skip
    assert set(nodes["net01"].roles) == agents | {"haproxy"}
    assert nodes["stor01"].roles == ("cinder-volume", "cinder-backup")
    assert nodes["stor01"].ssh.user == "storage-admin" and nodes["cmp002"].ssh.user == "kolla"
    site = inv.sites[0]
    assert site.region == "RegionNorth" and inv.identity_site == site.name
    variables = inv.spec.recipe.variables  # type: ignore[union-attr]
    assert variables["container_engine"] == "podman"
    assert (
        variables["kolla_services"] == "cinder,glance,heat,horizon,keystone,neutron,nova,"
        "octavia,placement"
    )
    text = out.read_text()
    assert "# not placed: hosts mon01: in no group of a service Rollgate upgrades" in text
    # kolla's inventory and Rollgate's must hold the same hosts (check compares them): the
    # monitoring host is declared, with why
    assert [(d.host, d.binaries) for d in site.unmanaged] == [("mon01", ())]
    assert "services heat, octavia: enabled in globals.yml, outside Rollgate's roles" in text


def test_import_kolla_reads_yaml_inventories_and_ovn(tmp_path: Path) -> None:
    found, _ = import_kolla(HERE / "kolla" / "multinode.yml", None)
    assert found.hosts["cmp001"] == {"nova-compute", "neutron-l2-agent"}
    assert found.variables["neutron_plugin_agent"] == "openvswitch"
    (tmp_path / "globals.yml").write_text('neutron_plugin_agent: "ovn"\n')
    found, _ = import_kolla(HERE / "kolla" / "multinode.yml", tmp_path / "globals.yml")
    # with OVN: ovn-controller is the L2 role, the OVN metadata agent the metadata one, and
    # the DHCP and L3 agents do not exist
    assert found.hosts["ctl01"] >= {"neutron-l2-agent", "neutron-metadata-agent", "ovsdb"}
    assert "neutron-l3-agent" not in found.hosts["ctl01"]
    assert found.addresses["ctl01"] == "10.20.0.1"


def test_import_osa_writes_a_venv_inventory_that_validates(tmp_path: Path) -> None:
    out = tmp_path / "osa.yaml"
    done = rollgate(
        tmp_path / "state", "import", "osa", str(HERE / "osa" / "openstack_user_config.yml"),
        "--from", "2025.2", "--to", "2026.1", "-o", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    inv = load_inventory(out)
    assert (
        inv.method == "venv" and inv.upgrade.describe() == "2025.2 (Flamingo) -> 2026.1 (Gazpacho)"
    )
    nodes = {n.name: n for n in inv.nodes}
    assert sorted(nodes) == ["compute1", "compute2", "infra1", "infra2", "stor1"]
    assert set(nodes["infra2"].roles) == {"keystone", "nova-api", "nova-scheduler",
                                          "nova-conductor", "placement-api", "database",
                                          "rabbitmq", "memcached"}  # fmt: skip
    assert "placement-api" in nodes["infra2"].roles  # from conf.d/placement.yml
    assert nodes["stor1"].roles == ("cinder-volume",) and nodes["stor1"].address == "172.29.236.41"
    # neutron's agents are OSA's to upgrade: declared unmanaged, so check does not block on them
    declared = {d.host: d for d in inv.sites[0].unmanaged}
    assert set(declared) == {"compute1", "compute2", "net1"}
    assert "neutron-openvswitch-agent" in declared["net1"].binaries
    text = out.read_text()
    assert "# not placed: group orchestration_hosts (infra1): a service Rollgate does not" in text
    assert "# not placed: infra1: horizon: the virtualenv method does not upgrade it" in text
    assert yaml.safe_load(text)["recipe"]["variables"] == {"service_manager": "systemd"}


def test_import_says_what_it_cannot_place(tmp_path: Path) -> None:
    empty = tmp_path / "openstack_user_config.yml"
    empty.write_text("cidr_networks: {management: 10.0.0.0/24}\n")
    # a configuration with no host groups is refused in one line
    done = rollgate(tmp_path / "state", "import", "osa", str(empty), "--from", "2025.2")
    assert (
        done.returncode == 2
        and done.stderr.startswith("error: ")
        and "no host groups" in (done.stderr)
    ), done.stderr
    # kolla's --from comes from globals.yml: without it, it must be given
    done = rollgate(tmp_path / "state", "import", "kolla", str(HERE / "kolla" / "multinode"))
    assert done.returncode == 2 and "the source release is not known: give --from" in done.stderr
