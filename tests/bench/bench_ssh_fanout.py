"""SSH fan-out: Rollgate's SSH executor vs Ansible vs parallel-ssh against real OpenSSH.

Debian's sshd runs on loopback with its own config, host key, client key and known_hosts;
each "node" is its own loopback address (127.77.0.2, 127.77.0.3, ...). sshd listens on at most
16 addresses per process (MAX_LISTEN_SOCKS), so the same config runs as one sshd per 16 nodes.
Every tool gets the same nodes, the same concurrency (50) and the same command.

At 1,000 nodes each tool runs as its own process tree, sampled for its resident memory (the
sum over the tree: Ansible forks a worker per host it runs at once); Rollgate keeps at most
200 connections open (its default cap), so 1,000 nodes make it close idle ones, least recently
used first. The benchmark raises its own open-file limit to the hard limit and says so.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import report, timed, tools_venv  # type: ignore[import-not-found]

from tests.sshd_helpers import Sshd, login_user

CONCURRENCY = 50
SEQUENCE = ("true", "hostname", "uptime", "id -u", "echo done")  # the five-step sequence
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
CONTROLLER = (
    "keystone, glance-api, placement-api, nova-conductor, nova-scheduler, nova-api, "
    "neutron-server, cinder-scheduler, cinder-api, cinder-volume, horizon"
)


BENCH_USER = "rollgate-bench"


def bench_user() -> str:
    """Who the tools log in as. As root: a system user whose shell is /bin/sh, so a login
    costs what sshd costs and not what a heavy ~/.bashrc costs (pyenv's init alone takes
    ~80 ms, more than the SSH work measured here). Otherwise: the current user."""
    if os.geteuid() != 0:
        return subprocess.check_output(["id", "-un"], text=True).strip()
    return login_user(BENCH_USER, sudo=False)


class BenchSshd(Sshd):
    """The tests' sshd, with the user the tools log in as."""

    def __init__(self, work: Path, nodes: int):
        super().__init__(work, nodes)
        self.user = bench_user()


# ---------------------------------------------------------------- Rollgate


def rollgate_inventory(sshd: BenchSshd, count: int) -> Path:
    nodes = "".join(
        f"      - {{name: n{i:03d}, address: {a}, roles: [{roles}]}}\n"
        for i, a in enumerate(sshd.addresses[:count])
        for roles in [CONTROLLER if i == 0 else "nova-compute"]
    )
    path = sshd.work / f"inventory-{count}.yaml"
    path.write_text(
        "cloud: bench-ssh\n"
        'upgrade: {from: "2025.1", to: "2025.2"}\n'
        f"ssh: {{user: {sshd.user}, port: {sshd.port}, key: {sshd.private_key}, "
        f"known_hosts: {sshd.known_hosts}}}\n"
        "shared: {identity: {site: one}}\n"
        "sites:\n  one:\n    nodes:\n" + nodes
    )
    return path


async def rollgate_fanout(sshd: BenchSshd, count: int, commands: tuple[str, ...]) -> float:
    return await rollgate_run(rollgate_inventory(sshd, count), commands)


async def rollgate_run(inventory_path: Path, commands: tuple[str, ...]) -> float:
    from rollgate.core.inventory import load_inventory
    from rollgate.core.transports.ssh import SshExecutor

    inventory = load_inventory(inventory_path)
    executor = SshExecutor()
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(node: object) -> None:
        async with slots:
            for command in commands:
                result = await executor.run(node, command, on_output=lambda s, ln: None, timeout=60)  # type: ignore[arg-type]
                if result.exit_status != 0:
                    raise RuntimeError(f"{command}: {result}")

    try:
        with timed() as t:
            await asyncio.gather(*(one(n) for n in inventory.nodes))
    finally:
        await executor.close()
    print(f"# connections: at most {executor.peak_connections} open, {executor.evicted} idle "
          "ones closed to make room", file=sys.stderr)  # fmt: skip
    return t[0]


# ---------------------------------------------------------------- a tool's memory


def tree_rss_mb(root: int) -> float:
    """Resident memory of `root` and every process below it, now."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, grew = {root}, True
    while grew:
        below = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= below
        grew = bool(below)
    pages = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/statm") as f:
                pages += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def measured(argv: list[str], env: dict[str, str] | None = None) -> tuple[str, float]:
    """Run `argv` to its end; its stdout and the peak resident memory of its process tree
    (sampled every 0.1 s)."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = [0.0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss_mb(proc.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {out[-2000:]!r} {err[-2000:]!r}")
    sys.stderr.write(err.decode(errors="replace")[-500:] if argv[0] == sys.executable else "")
    return out.decode(), peak[0]


# ---------------------------------------------------------------- Ansible


def ansible_files(sshd: BenchSshd, count: int) -> tuple[Path, Path, dict[str, str]]:
    hosts = sshd.work / f"ansible-hosts-{count}"
    hosts.write_text(
        "[all]\n"
        + "".join(f"{a}\n" for a in sshd.addresses[:count])
        + f"[all:vars]\nansible_port={sshd.port}\nansible_user={sshd.user}\n"
        f"ansible_ssh_private_key_file={sshd.private_key}\n"
        f"ansible_ssh_common_args='-o UserKnownHostsFile={sshd.known_hosts}'\n"
    )
    playbook = sshd.work / "sequence.yml"
    playbook.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        + "".join(f"    - command: '{c}'\n" for c in SEQUENCE)
    )
    env = {
        **os.environ,
        "ANSIBLE_HOST_KEY_CHECKING": "True",  # the same promise Rollgate keeps
        "ANSIBLE_PYTHON_INTERPRETER": shutil.which("python3", path="/usr/bin:/bin") or "python3",
        "ANSIBLE_LOCAL_TEMP": str(sshd.work / "ansible-local"),
        "ANSIBLE_CONTROL_PATH_DIR": str(sshd.work / "cp"),
        "ANSIBLE_PIPELINING": "True",  # Ansible's fastest setting
    }
    return hosts, playbook, env


def ansible_fanout(sshd: BenchSshd, count: int, sequence: bool) -> float:
    tools = tools_venv()
    hosts, playbook, env = ansible_files(sshd, count)
    if sequence:
        argv = [str(tools / "bin/ansible-playbook"), "-i", str(hosts), "-f", str(CONCURRENCY)]
        argv.append(str(playbook))
    else:
        argv = [str(tools / "bin/ansible"), "all", "-i", str(hosts), "-m", "command"]
        argv += ["-a", "true", "-f", str(CONCURRENCY)]
    with timed() as t:
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
    stop_ssh_masters(sshd)
    if done.returncode != 0:
        raise RuntimeError(f"ansible failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return t[0]


def stop_ssh_masters(sshd: BenchSshd) -> None:
    """End the connections Ansible leaves open (ControlPersist=60s, one ssh(1) per host): a
    thousand of them idling on would weigh on whatever is measured next."""
    subprocess.run(["pkill", "-f", str(sshd.work / "cp")], check=False)
    time.sleep(1)


# ---------------------------------------------------------------- parallel-ssh

PSSH_SCRIPT = """
import sys, time
from pssh.clients import ParallelSSHClient
hosts, port, user, key, commands = sys.argv[1].split(","), int(sys.argv[2]), sys.argv[3], \\
    sys.argv[4], sys.argv[5].split(";")
start = time.perf_counter()
client = ParallelSSHClient(hosts, port=port, user=user, pkey=key, pool_size={concurrency})
for command in commands:
    output = client.run_command(command, stop_on_errors=True)
    client.join(output)
    for host_out in output:
        if host_out.exit_code != 0:
            raise SystemExit(f"{{host_out.host}}: {{command}} exit {{host_out.exit_code}}")
print(time.perf_counter() - start)
"""


def pssh_argv(sshd: BenchSshd, count: int, commands: tuple[str, ...]) -> list[str]:
    """parallel-ssh running `commands` on the first `count` nodes, in the tools' virtualenv."""
    return [
        str(tools_venv() / "bin/python"),
        "-c",
        PSSH_SCRIPT.format(concurrency=CONCURRENCY),
        ",".join(sshd.addresses[:count]),
        str(sshd.port),
        sshd.user,
        str(sshd.private_key),
        ";".join(commands),
    ]


def pssh_fanout(sshd: BenchSshd, count: int, commands: tuple[str, ...]) -> float:
    done = subprocess.run(pssh_argv(sshd, count, commands), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"parallel-ssh failed: {done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def at_1000(sshd: BenchSshd, count: int = 1000) -> None:
    """`true` on `count` nodes, each tool its own process tree: seconds and peak memory."""
    tools = tools_venv()
    hosts, _, env = ansible_files(sshd, count)
    argv = [str(tools / "bin/ansible"), "all", "-i", str(hosts), "-m", "command", "-a", "true"]
    out, ours_rss = measured(
        [sys.executable, __file__, "--rollgate", str(rollgate_inventory(sshd, count)), "true"]
    )
    ours = float(out.split()[-1])
    out, pssh_rss = measured(pssh_argv(sshd, count, ("true",)))
    pssh = float(out.split()[-1])
    start = time.perf_counter()  # last: its lingering connections are ended after it
    _, ansible_rss = measured([*argv, "-f", str(CONCURRENCY)], env)
    ansible = time.perf_counter() - start
    stop_ssh_masters(sshd)
    for tool, seconds, rss in (
        ("rollgate", ours, ours_rss),
        ("ansible", ansible, ansible_rss),
        ("parallel_ssh", pssh, pssh_rss),
    ):
        report(f"ssh.true.{count}.{tool}", seconds, "s")
        report(f"ssh.true.{count}.{tool}_peak_rss", rss, "MB")
    report(f"ssh.true.{count}.ansible_over_rollgate", ansible / ours, "x")
    report(f"ssh.true.{count}.parallel_ssh_over_rollgate", pssh / ours, "x")


def raise_open_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        print(f"# open files: limit raised from {soft} to {hard} (a connection is one)")
    else:
        print(f"# open files: limit {soft}, already the hard limit (a connection is one)")


def main() -> None:
    if sys.argv[1:2] == ["--rollgate"]:  # a child of at_1000: Rollgate alone in its process
        print(asyncio.run(rollgate_run(Path(sys.argv[2]), tuple(sys.argv[3:]))))
        return
    if not Path(SSHD).exists():
        raise SystemExit("ssh fan-out: sshd not found; install it: apt-get install openssh-server")
    raise_open_files()
    with tempfile.TemporaryDirectory(prefix="rollgate-bench-ssh-") as tmp:
        sshd = BenchSshd(Path(tmp), 1000)
        sshd.start()
        try:
            at_1000(sshd)
            for count in (50, 200):
                ours = asyncio.run(rollgate_fanout(sshd, count, ("true",)))
                ansible = ansible_fanout(sshd, count, sequence=False)
                pssh = pssh_fanout(sshd, count, ("true",))
                report(f"ssh.true.{count}.rollgate", ours, "s")
                report(f"ssh.true.{count}.ansible", ansible, "s")
                report(f"ssh.true.{count}.parallel_ssh", pssh, "s")
                report(f"ssh.true.{count}.ansible_over_rollgate", ansible / ours, "x")
                report(f"ssh.true.{count}.parallel_ssh_over_rollgate", pssh / ours, "x")
            count = 200
            ours = asyncio.run(rollgate_fanout(sshd, count, SEQUENCE))
            ansible = ansible_fanout(sshd, count, sequence=True)
            pssh = pssh_fanout(sshd, count, SEQUENCE)
            report(f"ssh.sequence5.{count}.rollgate", ours, "s")
            report(f"ssh.sequence5.{count}.ansible", ansible, "s")
            report(f"ssh.sequence5.{count}.parallel_ssh", pssh, "s")
            report(f"ssh.sequence5.{count}.ansible_over_rollgate", ansible / ours, "x")
            report(f"ssh.sequence5.{count}.parallel_ssh_over_rollgate", pssh / ours, "x")
        finally:
            sshd.stop()


if __name__ == "__main__":
    main()
