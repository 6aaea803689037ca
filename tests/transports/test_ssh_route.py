"""Where each SSH setting comes from: the inventory first, the ssh config for what it leaves
unset (as `ssh ADDRESS` reads it), a jump host inheriting the inventory's key and
known_hosts unless it has its own."""

from __future__ import annotations

from pathlib import Path

from rollgate.core.inventory import Node, load_inventory
from rollgate.core.transports.ssh_route import route

CONFIG = """\
Host fra-*
  HostName %h.mgmt.example.net
  User ops
  Port 2200
  IdentityFile ~/.ssh/cloud_ed25519
  UserKnownHostsFile ~/.ssh/cloud_known_hosts
  ProxyJump bastion
Host bastion
  HostName bastion.example.net
  User jump
  Port 2222
  IdentityFile ~/.ssh/bastion_ed25519
  ProxyJump outer
Host loop-*
  ProxyJump loop-a
"""


def node(tmp_path: Path, ssh: str) -> Node:
    (tmp_path / "ssh_config").write_text(CONFIG)
    path = tmp_path / "inventory.yaml"
    path.write_text(
        "cloud: route\n"
        'upgrade: {from: "2025.1", to: "2025.2"}\n'
        f"ssh: {{config: {tmp_path / 'ssh_config'}{', ' if ssh else ''}{ssh}}}\n"
        "shared: {identity: {site: one}}\n"
        "sites:\n  one:\n    nodes:\n      - {name: k1, address: fra-ctl1, roles: [keystone]}\n"
    )
    return load_inventory(path).nodes[0]


def test_the_ssh_config_fills_what_the_inventory_leaves_unset(tmp_path: Path) -> None:
    way = route(node(tmp_path, ""))
    hop = way.node
    assert (hop.host, hop.port, hop.user) == ("fra-ctl1.mgmt.example.net", 2200, "ops")
    assert hop.keys == ("~/.ssh/cloud_ed25519",)
    assert hop.known_hosts == "~/.ssh/cloud_known_hosts"
    outer, jump = way.jumps  # the bastion's own ProxyJump first, as OpenSSH chains it
    assert (outer.host, outer.port, outer.user) == ("outer", 22, None)
    assert (jump.host, jump.port, jump.user) == ("bastion.example.net", 2222, "jump")
    assert jump.keys == ("~/.ssh/bastion_ed25519",) and jump.known_hosts is None
    assert set(way.from_config()) == {
        "address", "port", "user", "key", "known_hosts", "jump",
        "bastion: address", "bastion: port", "bastion: user", "bastion: key",
    }  # fmt: skip


def test_the_inventory_wins_and_the_jump_host_inherits_its_key(tmp_path: Path) -> None:
    way = route(
        node(
            tmp_path,
            "user: root, port: 22, key: /k/node, known_hosts: /k/hosts, "
            "jump_host: 'admin@10.0.0.5:2022'",
        )
    )
    hop = way.node
    assert (hop.host, hop.port, hop.user, hop.keys) == ("fra-ctl1.mgmt.example.net", 22, "root",
                                                        ("/k/node",))  # fmt: skip
    [jump] = way.jumps
    # the jump host as written, the inventory's key and known_hosts before its config block
    assert (jump.host, jump.port, jump.user) == ("10.0.0.5", 2022, "admin")
    assert jump.keys == ("/k/node",) and jump.known_hosts == "/k/hosts"
    assert way.from_config() == ["address"]  # only the alias's HostName


def test_a_jump_host_with_its_own_settings_and_config_false(tmp_path: Path) -> None:
    way = route(
        node(
            tmp_path,
            "key: /k/node, jump: [{host: a, key: /k/a}, {host: b, port: 2, known_hosts: /k/b}]",
        )
    )
    assert [(j.host, j.port, j.keys, j.known_hosts) for j in way.jumps] == [
        ("a", 22, ("/k/a",), None),
        ("b", 2, ("/k/node",), "/k/b"),
    ]
    bare = node(tmp_path, "")
    off = route(Node(bare.name, bare.address, bare.site, bare.roles, bare.az,
                     type(bare.ssh)(**{**bare.ssh.__dict__, "config": False})))  # fmt: skip
    assert (off.node.host, off.node.port, off.node.user, off.jumps) == ("fra-ctl1", 22, None, ())


def test_a_loop_of_proxy_jumps_stops_at_the_limit(tmp_path: Path) -> None:
    way = route(node(tmp_path, "jump_host: loop-b"))
    assert len(way.jumps) == 8 and {j.host for j in way.jumps} == {"loop-a", "loop-b"}
