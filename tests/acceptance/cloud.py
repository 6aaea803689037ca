"""The acceptance cloud's processes: a private MariaDB and RabbitMQ, and one node per loopback
address (its own mount namespace with its own /etc/nova..., an sshd, a supervisord), all
started here and stopped by process group; nothing is left listening."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.acceptance import layout
from tests.acceptance.configs import Secrets, service_files, sshd_conf
from tests.acceptance.layout import (
    CONSTRAINTS,
    DB_ADDRESS,
    DB_NODES,
    EPMD_PORT,
    HERE,
    MEMCACHED_PORT,
    NODE_DIRS,
    NODES,
    PROGRAMS,
    RABBIT_DIST_PORT,
    RABBIT_PORT,
    SITES,
    STATE,
    VENVS,
)

# each region's services' databases, on its own database server; keystone's on dc1's
REGION_DATABASES = ("glance", "placement", "nova_api", "nova", "nova_cell0", "neutron", "cinder")
DATABASES = {"dc1": ("keystone", *REGION_DATABASES), "dc2": REGION_DATABASES}


class SetupError(RuntimeError):
    """The cloud could not be built; the message says which part and where its log is."""


def wait_port(address: str, port: int, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            socket.create_connection((address, port), timeout=1).close()
            return
        time.sleep(0.2)
    raise SetupError(
        f"{what} did not listen on {address}:{port} in {timeout:g}s"
        + (f"; see {log}" if log else "")
    )


def listening(address: str, port: int) -> bool:
    with contextlib.suppress(OSError):
        socket.create_connection((address, port), timeout=0.5).close()
        return True
    return False


class Cloud:
    """Everything the harness starts; `stop()` ends it all, by process group."""

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.made: list[Path] = []  # mount points this run created on the machine
        self.secrets = Secrets(*(secrets.token_hex(12) for _ in range(3)))
        self.ssh = STATE / "ssh"

    # ------------------------------------------------------------ lifecycle
    def spawn(self, name: str, argv: list[str], log: Path, **env: str) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            self.procs[name] = proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
            )

        with (STATE / "process-groups").open("a") as groups:  # for a run that was killed
            groups.write(f"{proc.pid}\n")

    def stop(self) -> list[str]:
        """Stop every process group started here (nodes first, then RabbitMQ, MariaDB);
        returns what needed SIGKILL."""
        killed = []
        for node in NODES:  # the programs first (each in its own process group), then supervisord
            if node in self.procs and self.procs[node].poll() is None:
                with contextlib.suppress(subprocess.SubprocessError, SetupError):
                    self.on(node, "supervisorctl stop all", check=False, timeout=60)
                    self.on(node, "supervisorctl shutdown", check=False, timeout=30)
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                killed.append(name)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # what outlived its leader
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self.procs.clear()
        for path in reversed(self.made):
            with contextlib.suppress(OSError):
                path.rmdir()
        return killed

    def leftovers(self) -> list[str]:
        """Addresses and ports of this cloud still listening (there should be none)."""
        ports = [(a, 3306) for _, a in DB_NODES.values()]
        ports += [(DB_ADDRESS, RABBIT_PORT), ("127.0.0.1", EPMD_PORT)]
        ports.append((DB_ADDRESS, MEMCACHED_PORT))
        ports += [(a, 2200) for a in NODES.values()]
        ports += [(NODES[n], p.port) for n, ps in PROGRAMS.items() for p in ps if p.port]
        return [f"{a}:{p}" for a, p in ports if listening(a, p)]

    # ------------------------------------------------------------ MariaDB, RabbitMQ
    def start_mariadb(self) -> None:
        """One database server per region, each on its region's database node's address."""
        for site in SITES:
            self._start_mariadb(site)

    def _socket(self, site: str) -> Path:
        return STATE / f"mariadb-{site}" / "mysqld.sock"

    def _start_mariadb(self, site: str) -> None:
        address = DB_NODES[site][1]
        data, run = STATE / f"mariadb-{site}" / "data", STATE / f"mariadb-{site}"
        data.mkdir(parents=True)
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={data}",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
        )
        self.spawn(
            f"mariadb-{site}",
            [
                "mariadbd",
                "--no-defaults",
                f"--datadir={data}",
                f"--socket={run}/mysqld.sock",
                f"--pid-file={run}/mysqld.pid",
                f"--bind-address={address}",
                "--port=3306",
                "--user=root",
                "--skip-name-resolve",
                "--max-connections=1000",
                "--innodb-buffer-pool-size=256M",
                "--innodb-flush-log-at-trx-commit=2",
                f"--log-error={run}/error.log",
            ],
            run / "mariadbd.out",
        )
        wait_port(address, 3306, 60, f"MariaDB of {site}", run / "error.log")
        grants = "".join(f"CREATE DATABASE {d};" for d in DATABASES[site])
        grants += (
            f"CREATE USER 'openstack'@'%' IDENTIFIED BY '{self.secrets.db}';"
            "GRANT ALL PRIVILEGES ON *.* TO 'openstack'@'%';FLUSH PRIVILEGES;"
        )
        subprocess.run(
            ["mariadb", "--no-defaults", f"--socket={self._socket(site)}", "-uroot", "-e", grants],
            check=True,
            capture_output=True,
        )

    def sql(self, query: str, site: str = "dc1") -> list[list[str]]:
        """Rows of a query, asked of the site's MariaDB directly (as root on its socket), not
        through any service: what the database holds."""
        done = subprocess.run(
            ["mariadb", "--no-defaults", f"--socket={self._socket(site)}", "-uroot",
             "-N", "-B", "-e", query],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if done.returncode != 0:
            raise SetupError(f"MariaDB: {query!r}: {done.stderr.strip()[-500:]}")
        return [line.split("\t") for line in done.stdout.splitlines()]

    def start_memcached(self) -> None:
        """keystone's cache, shared by its workers (as deployments run it)."""
        self.spawn(
            "memcached",
            [
                "memcached",
                "-l",
                DB_ADDRESS,
                "-p",
                str(MEMCACHED_PORT),
                "-U",
                "0",
                "-u",
                "root",
                "-m",
                "64",
            ],
            STATE / "memcached.out",
        )
        wait_port(DB_ADDRESS, MEMCACHED_PORT, 20, "memcached", STATE / "memcached.out")

    def start_rabbitmq(self) -> None:
        base = STATE / "rabbitmq"
        base.mkdir(parents=True)
        (base / "enabled_plugins").write_text("[].\n")
        (base / "rabbitmq.conf").write_text("loopback_users = none\n")
        env = {
            "HOME": str(base),
            "ERL_EPMD_PORT": str(EPMD_PORT),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODENAME": "rollgate-acceptance@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": DB_ADDRESS,
            "RABBITMQ_NODE_PORT": str(RABBIT_PORT),
            "RABBITMQ_DIST_PORT": str(RABBIT_DIST_PORT),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
        }
        self.spawn(
            "epmd",
            ["epmd", "-address", "127.0.0.1", "-port", str(EPMD_PORT)],
            base / "epmd.out",
            **env,
        )
        wait_port("127.0.0.1", EPMD_PORT, 20, "epmd")
        self.spawn(
            "rabbitmq", ["/usr/lib/rabbitmq/bin/rabbitmq-server"], base / "server.out", **env
        )
        wait_port(DB_ADDRESS, RABBIT_PORT, 120, "RabbitMQ", base / "server.out")
        ctl = "/usr/lib/rabbitmq/bin/rabbitmqctl"
        for site in SITES:  # a virtual host per region: each region's RPC its own
            grant = [ctl, "set_permissions", "-p", site, "guest", ".*", ".*", ".*"]
            for argv in ([ctl, "add_vhost", site], grant):
                done = subprocess.run(
                    argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=120
                )
                if done.returncode != 0:
                    raise SetupError(f"{' '.join(argv)}: {(done.stderr or done.stdout)[-300:]}")

    # ------------------------------------------------------------ nodes
    def make_ssh_keys(self) -> None:
        self.ssh.mkdir(parents=True)
        for name in ("host_key", "client_key"):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.ssh / name)],
                check=True,
            )
        shutil.copy(self.ssh / "client_key.pub", self.ssh / "authorized_keys")
        host = " ".join((self.ssh / "host_key.pub").read_text().split()[:2])
        (self.ssh / "known_hosts").write_text(
            "".join(f"[{a}]:2200 {host}\n" for a in NODES.values())
        )

    def node_dir(self, node: str) -> Path:
        return STATE / "nodes" / node

    def write_node(self, node: str) -> None:
        root = self.node_dir(node)
        for path in NODE_DIRS:
            (root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
            target = Path(path)
            if not target.exists():
                target.mkdir(parents=True)
                self.made.append(target)
        for path, text in service_files(node, self.secrets).items():
            file = root / path.lstrip("/")
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(text)
            file.chmod(0o600)
        for sub in (
            "glance/images",
            "glance/staging",
            "glance/tasks",
            "glance/lock",
            "nova/tmp",
            "cinder/tmp",
        ):
            (root / "var/lib" / sub).mkdir(parents=True, exist_ok=True)
        paste = VENVS / layout.SOURCE / "etc"  # the paste files the old release's packages ship
        for src, dst in (
            ("nova/api-paste.ini", "etc/nova/api-paste.ini"),
            ("glance/glance-api-paste.ini", "etc/glance/glance-api-paste.ini"),
            ("cinder/api-paste.ini", "etc/cinder/api-paste.ini"),
            ("neutron/api-paste.ini", "etc/neutron/api-paste.ini"),
        ):
            if (root / dst).parent.is_dir() and (paste / src).is_file():
                shutil.copy(paste / src, root / dst)
        (root / "sshd_config").write_text(sshd_conf(node, str(self.ssh), str(root)))
        mounts = "".join(f"mount --bind {root}{p} {p}\n" for p in NODE_DIRS)
        (root / "init.sh").write_text(
            "set -e\n"
            + mounts
            + "supervisord -c /etc/supervisor/supervisord.conf &\n"
            + f"exec /usr/sbin/sshd -D -e -f {root}/sshd_config\n"
        )

    def start_node(self, node: str) -> None:
        root = self.node_dir(node)
        Path("/run/sshd").mkdir(exist_ok=True)
        self.spawn(
            node,
            ["unshare", "--mount", "--propagation", "private", "sh", str(root / "init.sh")],
            root / "node.out",
        )
        wait_port(NODES[node], 2200, 20, f"{node}'s sshd", root / "node.out")
        deadline = time.monotonic() + 20
        while self.on(node, "supervisorctl pid", check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise SetupError(f"{node}'s supervisord did not start; see {root}/node.out")
            time.sleep(0.2)

    def on(
        self, node: str, command: str, *, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell command inside the node (its mounts), as the harness's operator."""
        done = subprocess.run(
            ["nsenter", "-t", str(self.procs[node].pid), "-m", "--", "sh", "-c", command],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise SetupError(
                f"on {node}: {command!r} exited {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()[-2000:]}"
            )
        return done


# what makes up the cloud in `ps` (its programs run from the cached virtualenvs)
CLOUD_PROCESSES = ("/var/cache/rollgate-acceptance/", "mariadbd", "beam.smp", "epmd",
                   "memcached", "supervisord", "/var/tmp/rollgate-acceptance/")  # fmt: skip


def cloud_rss_mb() -> float:
    """The resident memory of every process of the cloud now (MiB): its programs, databases,
    broker, supervisors and sshds."""
    found = subprocess.run(["ps", "-eo", "rss=,args="], capture_output=True, text=True)
    total = 0
    for line in found.stdout.splitlines():
        rss, _, args = line.strip().partition(" ")
        if rss.isdigit() and any(mark in args for mark in CLOUD_PROCESSES):
            total += int(rss)
    return round(total / 1024, 1)


def stop_leftovers() -> int:
    """Stop the process groups a previous run started and could not stop (it was killed),
    and any program of the cloud that outlived its supervisord (each runs in a process group
    of its own, from the cached virtualenvs): one left would join the new cloud's databases."""
    file = STATE / "process-groups"
    stopped = 0
    if file.is_file():
        for line in file.read_text().split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.killpg(int(line), signal.SIGKILL)
                stopped += 1
    found = subprocess.run(["pgrep", "-f", f"{VENVS}/"], capture_output=True, text=True)
    for pid in found.stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
            stopped += 1
    return stopped


def copy_constraints() -> None:
    CONSTRAINTS.mkdir(parents=True, exist_ok=True)
    for file in (HERE / "constraints").iterdir():
        shutil.copy(file, CONSTRAINTS / file.name)


def build_venv(release: str, requirements: list[str], log: Path) -> float:
    """The release's virtualenv, as the method's install-venv step builds it (kept between
    runs); returns the seconds it took (0 when it was there)."""
    venv = VENVS / release
    marker = venv / ".rollgate-ready"
    wanted = "".join(f"{r} " for r in requirements)  # as the method's install-venv writes it
    if marker.is_file() and marker.read_text() == wanted:
        return 0.0
    started = time.monotonic()
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        for argv in (
            ["/usr/bin/python3", "-m", "venv", str(venv)],
            [
                str(venv / "bin/pip"),
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-c",
                str(CONSTRAINTS / release),
                *requirements,
            ],
            [str(venv / "bin/pip"), "check"],
        ):
            if subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                raise SetupError(
                    f"building the {release} virtualenv failed: {' '.join(argv)}; see {log}"
                )
    marker.write_text(wanted)
    return time.monotonic() - started
