"""Real OpenSSH (Debian's sshd) on loopback for tests and benchmarks, started and stopped by pid.

Each "node" is its own loopback address; sshd listens on at most 16 addresses per process
(MAX_LISTEN_SOCKS), so the same config runs as one sshd per 16 nodes. Root logs in with a key;
`login_user()` makes a system user (shell /bin/sh) with passwordless sudo for the commands a
non-root login needs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import worker_index

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
TEST_USER = "rollgate-test"


def need_sshd() -> None:
    """Skip, saying what to install, where Debian's OpenSSH server is absent."""
    if not Path(SSHD).is_file():
        pytest.skip("needs OpenSSH's sshd: apt-get install openssh-server (.ci/run does)")
    if os.geteuid() != 0:
        pytest.skip("needs root: sshd logs in as root and as a test user")


def login_user(name: str = TEST_USER, *, sudo: bool = True) -> str:
    """A system user whose shell is /bin/sh (no heavy shell init), allowed `sudo -n`."""
    home = Path("/var/lib") / name
    if subprocess.run(["id", name], capture_output=True).returncode != 0:
        subprocess.run(
            ["useradd", "--system", "--shell", "/bin/sh", "--home-dir", str(home), name],
            check=True,
        )
        # "*": no password, but not locked ("!"), which sshd without PAM would refuse
        subprocess.run(["usermod", "-p", "*", name], check=True)
    home.mkdir(exist_ok=True)
    shutil.chown(home, name, name)
    if sudo:
        if not shutil.which("sudo"):
            pytest.skip("needs sudo: apt-get install sudo (.ci/run does)")
        rule = Path("/etc/sudoers.d") / name
        rule.write_text(f"{name} ALL=(ALL) NOPASSWD: ALL\n")
        rule.chmod(0o440)
    return name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sshd:
    """sshd processes (16 addresses each) sharing one config, keys and known_hosts."""

    def __init__(
        self,
        work: Path,
        nodes: int,
        *,
        net: str = "127.77",
        addresses: list[str] | None = None,
        netns: str | None = None,
    ):
        self.work = work
        self.port = free_port()
        block = 20 * worker_index()  # each xdist worker its own addresses
        self.addresses = addresses or [
            f"{net}.{block + (i + 2) // 250}.{(i + 2) % 250 + 1}" for i in range(nodes)
        ]
        self.netns = netns  # started inside this network namespace (NetNs below)
        self.procs: list[subprocess.Popen[bytes]] = []
        for name in ("host_key", "client_key"):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / name)], check=True
            )
        shutil.copy(work / "client_key.pub", work / "authorized_keys")
        work.chmod(0o755)  # sshd reads authorized_keys as the user logging in
        (work / "authorized_keys").chmod(0o644)
        (work / "client_key").chmod(0o644)  # the test user's driver reads it too
        # OpenSSH's client (Ansible's transport) refuses a private key others can read: a
        # copy of the same key, private to its owner, for tools that use ssh(1)
        self.private_key = work / "client_key.private"
        shutil.copy(work / "client_key", self.private_key)
        self.private_key.chmod(0o600)
        host_pub = (work / "host_key.pub").read_text().split()[:2]
        self.known_hosts = work / "known_hosts"
        self.known_hosts.write_text(
            "".join(f"[{a}]:{self.port} {' '.join(host_pub)}\n" for a in self.addresses)
        )
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory

    def start(self) -> Sshd:
        for first in range(0, len(self.addresses), 16):
            config = self.work / f"sshd_config.{first}"
            listen = "".join(f"ListenAddress {a}\n" for a in self.addresses[first : first + 16])
            config.write_text(
                f"Port {self.port}\n{listen}"
                f"HostKey {self.work / 'host_key'}\n"
                f"AuthorizedKeysFile {self.work / 'authorized_keys'}\n"
                f"PidFile {self.work / f'sshd.{first}.pid'}\n"
                "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
                "MaxStartups 500\nMaxSessions 50\nLogLevel ERROR\n"
                # a login shell here is this machine's: root's bash would read its ~/.bashrc
                # (pyenv's set-up forks ~100 processes a session); sessions of a nested
                # shell level skip it, as on a node whose login shell is quiet
                "SetEnv SHLVL=1\n"
            )
            inside = ["ip", "netns", "exec", self.netns] if self.netns else []
            self.procs.append(
                subprocess.Popen(
                    [*inside, SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.DEVNULL
                )
            )
        deadline = time.monotonic() + 10
        if self.netns:  # not reachable from here: ready once each writes its pid file
            for first in range(0, len(self.addresses), 16):
                pid_file = self.work / f"sshd.{first}.pid"
                while not pid_file.exists():
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"sshd did not start in {self.netns}")
                    time.sleep(0.05)
            return self
        for address in self.addresses:
            while True:
                try:
                    socket.create_connection((address, self.port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"sshd did not start on {address}") from None
                    time.sleep(0.05)
        return self

    def cut_connections(self) -> int:
        """Kill every per-connection sshd process (not the listeners): each client's
        connection drops, as when a network path fails. Returns how many were killed."""
        listeners = {p.pid for p in self.procs}
        parents: dict[int, int] = {}
        titles: dict[int, bytes] = {}
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                parents[int(proc.name)] = int(
                    (proc / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
                titles[int(proc.name)] = (proc / "cmdline").read_bytes()
            except (OSError, ValueError, IndexError):
                continue

        def served_by_us(pid: int) -> bool:
            for _ in range(4):
                pid = parents.get(pid, 0)
                if pid in listeners:
                    return True
            return False

        doomed = [
            pid
            for pid, title in titles.items()
            if title.startswith(b"sshd: ") and served_by_us(pid)
        ]
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(doomed)

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            proc.wait(timeout=10)


def processes_with(token: str) -> list[str]:
    """Command lines of live (not zombie) processes that carry `token`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        if state != "Z" and token in cmdline:
            found.append(cmdline)
    return found


@contextlib.contextmanager
def running_sshd(nodes: int, net: str) -> Iterator[Sshd]:
    """sshd for `nodes` loopback addresses under `net`, in a work directory of its own (not
    under pytest's tmp dirs, mode 0700: sshd reads authorized_keys as the test user); skips
    where sshd or root is missing. Stopped and removed on exit."""
    need_sshd()
    work = Path(tempfile.mkdtemp(prefix="rollgate-sshd-", dir="/var/tmp"))
    server = Sshd(work, nodes, net=net).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


class NetNs:
    """A network namespace joined to this one by a veth pair: this side HOST, the other
    GUEST (a /30 of 10.254.0.0/16, one per xdist worker). What listens on the namespace's
    own loopback is reachable only from inside it — as a node behind a bastion is."""

    def __init__(self) -> None:
        index = worker_index()
        self.name = f"rgns{index}-{os.getpid()}"
        self.link = f"rgv{index}x{os.getpid() % 10000}"
        self.host, self.guest = f"10.254.{index}.1", f"10.254.{index}.2"

    def create(self) -> NetNs:
        def ip(*args: str) -> None:
            subprocess.run(["ip", *args], check=True, capture_output=True)

        ip("netns", "add", self.name)
        ip("link", "add", self.link, "type", "veth", "peer", "name", "inner", "netns", self.name)
        ip("addr", "add", f"{self.host}/30", "dev", self.link)
        ip("link", "set", self.link, "up")
        ip("-n", self.name, "addr", "add", f"{self.guest}/30", "dev", "inner")
        ip("-n", self.name, "link", "set", "inner", "up")
        ip("-n", self.name, "link", "set", "lo", "up")
        return self

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        subprocess.run(["ip", "link", "del", self.link], capture_output=True)


def need_netns() -> None:
    """Skip, saying what to install, where network namespaces cannot be made."""
    need_sshd()
    if not shutil.which("ip"):
        pytest.skip("needs iproute2's ip: apt-get install iproute2 (.ci/run does)")
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("needs network namespaces (root with CAP_SYS_ADMIN): run as root")
