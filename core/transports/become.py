"""Running as root with sudo, told apart from the command it runs: the shell sudo starts says
so first (a marker line on stderr), so a failure of sudo itself (a password wanted, not
allowed, no tty) is never read as the command's own exit status."""

from __future__ import annotations

import shlex

MARK = "rollgate-become: root"
# the command's stdin is /dev/null: a password given to `sudo -S` that sudo did not need
# (NOPASSWD, or a cached ticket) is never read by the command
SCRIPT = f'echo "{MARK}" >&2; exec sh -c "$1" </dev/null'


def as_root(line: str, *, password: bool = False) -> str:
    """The command line that runs `line` as root: `sudo -n`, or `sudo -S` reading the
    password from stdin when one is given."""
    sudo = "sudo -S -p ''" if password else "sudo -n"
    return f"{sudo} -- sh -c {shlex.quote(SCRIPT)} rollgate-become {shlex.quote(line)}"


def sudo_reason(lines: list[str]) -> str:
    """What sudo said when it did not run the command, as one line."""
    said = [line.strip() for line in lines if line.strip()]
    if not said:
        return "sudo ended without a word (is sudo installed?)"
    last = said[-1]
    if "password is required" in last or "no password was provided" in last:
        return (
            f"{last} — allow passwordless sudo (NOPASSWD) for this login, or give "
            "ssh.become_password or --ask-become-pass"
        )
    if "incorrect password" in last:
        return f"{last} — the become password is wrong"
    if "not in the sudoers" in last or "not allowed" in last:
        return f"{last} — this login may not run commands as root here"
    return last
