"""The lab's docker: `docker exec` into a container named after one of the node's roles."""

from __future__ import annotations

from core.lab.commands import Handler, Shell, dispatch


async def _docker(sh: Shell, argv: list[str]) -> int:
    """`docker exec [-i] [-t] [-u USER] CONTAINER COMMAND...`: the command runs with the node's
    world, in a container named after one of the node's roles (kolla's names: nova_api ...)."""
    if argv[1:2] != ["exec"]:
        sh.err("docker: the lab's docker supports `exec CONTAINER COMMAND...` only")
        return 125
    rest = argv[2:]
    while rest and rest[0].startswith("-"):
        rest = rest[2:] if rest[0] in ("-u", "--user", "-w", "--workdir", "-e") else rest[1:]
    if len(rest) < 2:
        sh.err('"docker exec" requires at least 2 arguments.')
        return 1
    container, command = rest[0], rest[1:]
    if container not in {r.replace("-", "_") for r in sh.node.roles}:
        sh.err(f"Error response from daemon: No such container: {container}")
        return 1
    handler = dispatch(command)
    if handler is None:
        sh.err(f"OCI runtime exec failed: exec failed: {command[0]}: executable file not found")
        return 126
    return await handler(sh, command)


COMMANDS: dict[str, Handler] = {"docker": _docker}
