"""`rollgate serve RUN_ID`: the console of a running run in a browser (textual-serve), on
127.0.0.1 only, behind a random token in the URL; read-only unless --control."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shlex
import signal
import sys
from typing import Any, ClassVar

import click

STOP_GRACE = 5.0  # seconds a console has to quit when its page goes, before it is ended
SERVED_BY = "ROLLGATE_SERVED_BY"  # the serving process's pid, in each console's environment


# pids of consoles serve ended itself (see _EndedConsoles)
_ended: set[int] = set()


class _EndedConsoles(logging.Filter):
    """Drops asyncio's "Unknown child process pid N" for a console serve ended: signalling a
    process polls it first (CPython's Popen.send_signal), which reaps one that exited that
    instant, and asyncio's watcher, finding it gone, says so in the operator's terminal."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        unknown = str(record.msg).startswith("Unknown child process pid")
        return not (unknown and args and args[0] in _ended)


async def end_process(process: Any) -> None:
    """SIGTERM, then SIGKILL after a grace: a console whose page went does not outlive it."""
    if process is None or process.returncode is not None:
        return
    _ended.add(process.pid)
    try:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), STOP_GRACE)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    finally:  # asyncio's watcher spoke before the wait returned; the pid may be reused now
        _ended.discard(process.pid)


def bounded_app_service() -> Any:
    """textual-serve's AppService whose console process always ends with its session: the
    page's "quit" first, then SIGTERM and SIGKILL (a tab closed abruptly left consoles
    spinning); every live one is known, so serve's own end ends them all."""
    from textual_serve.app_service import AppService

    class BoundedAppService(AppService):
        live: ClassVar[set[Any]] = set()

        async def start(self, width: int, height: int) -> None:
            await super().start(width, height)
            BoundedAppService.live.add(self)

        async def stop(self) -> None:
            process = self._process
            with contextlib.suppress(Exception):  # the page may be gone: quit cannot be said
                await asyncio.wait_for(super().stop(), STOP_GRACE)
            await end_process(process)
            BoundedAppService.live.discard(self)

    return BoundedAppService


def make_server(run: str, port: int, control: bool, token: str, name: str = "") -> Any:
    """A textual-serve Server whose every route sits under /TOKEN/ (anything else: 404), and
    whose sessions run `rollgate attach RUN` (control) or `rollgate watch RUN`, each ended
    with its session, with serve, and on serve's SIGTERM; no access log (the URL printed once
    stays in view)."""
    from aiohttp import web
    from textual_serve import server as textual_server
    from textual_serve.server import Server

    service = bounded_app_service()
    textual_server.AppService = service  # type: ignore[misc]  # what its sessions are made of
    verb = "attach" if control else "watch"
    named = ["--name", name] if control and name else []
    # exec: the console is serve's own child (not a shell's), so it can be ended and it
    # ends itself when serve dies (SERVED_BY)
    command = "exec " + shlex.join(
        ["env", f"{SERVED_BY}={os.getpid()}", sys.executable, "-P", "-m", "rollgate", verb, run,
         *named]
    )  # fmt: skip

    class TokenServer(Server):
        async def _make_app(self) -> web.Application:
            import aiohttp_jinja2
            import jinja2

            app = web.Application()
            aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(self.templates_path))
            app.add_routes(
                [
                    web.get(f"/{token}/", self.handle_index, name="index"),
                    web.get(f"/{token}/ws", self.handle_websocket, name="websocket"),
                    web.get(f"/{token}/download/{{key}}", self.handle_download, name="download"),
                    web.static(f"/{token}/static", self.statics_path, name="static"),
                ]
            )
            app.on_shutdown.append(self.on_shutdown)
            return app  # no startup banner: the URL with its token is printed once, by us

        async def on_shutdown(self, app: web.Application) -> None:
            await asyncio.gather(*(s.stop() for s in list(service.live)))

        def serve(self, debug: bool = False) -> None:
            """textual-serve's serve, without the access log."""
            self.debug = debug
            self.initialize_logging()
            logging.getLogger("asyncio").addFilter(_EndedConsoles())
            loop = asyncio.new_event_loop()
            loop.add_signal_handler(signal.SIGINT, self.request_exit)
            loop.add_signal_handler(signal.SIGTERM, self.request_exit)
            web.run_app(self._make_app(), host=self.host, port=self.port, handle_signals=False,
                        loop=loop, print=lambda *args: None, access_log=None)  # fmt: skip

    return TokenServer(
        command,
        host="127.0.0.1",
        port=port,
        title=f"Rollgate {run}",
        public_url=f"http://127.0.0.1:{port}",
    )


def die_with_server() -> None:
    """In a console `rollgate serve` started: end when serve ends, however it ends (SIGKILL
    too: Linux's parent-death signal)."""
    served_by = os.environ.get(SERVED_BY)
    if not served_by or not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if str(os.getppid()) != served_by:  # serve died before the signal was asked for
        sys.exit(0)


@click.command()
@click.argument("run")
@click.option("--port", default=8470, show_default=True, help="Port on 127.0.0.1.")
@click.option(
    "--control",
    is_flag=True,
    help="Let the browser decide gates (as `rollgate attach`); read-only without it.",
)
@click.option("--name", default="", help="With --control: your name in the journal (besides "
              "the login).")  # fmt: skip
def serve(run: str, port: int, control: bool, name: str) -> int:
    """Serve RUN's console to a browser on 127.0.0.1, at a URL with a random token (printed
    once); Ctrl-C stops serving, the run goes on."""
    try:
        import textual_serve  # noqa: F401
    except ImportError:
        from rollgate.core.errors import UserError

        raise UserError("rollgate serve needs textual-serve: pip install textual-serve") from None
    token = secrets.token_urlsafe(24)
    server = make_server(run, port, control, token, name)
    click.echo(f"http://127.0.0.1:{port}/{token}/  ({'control' if control else 'read-only'})")
    server.serve()
    return 0
