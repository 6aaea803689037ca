"""`rollgate serve RUN_ID`: the console of a running run in a browser (textual-serve), on
127.0.0.1 only, behind a random token in the URL; read-only unless --control."""

from __future__ import annotations

import secrets
import shlex
import sys
from typing import Any

import click


def make_server(run: str, port: int, control: bool, token: str) -> Any:
    """A textual-serve Server whose every route sits under /TOKEN/ (anything else: 404), and
    whose sessions run `rollgate attach RUN` (control) or `rollgate watch RUN`."""
    from aiohttp import web
    from textual_serve.server import Server

    verb = "attach" if control else "watch"
    command = shlex.join([sys.executable, "-P", "-m", "rollgate", verb, run])

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

    return TokenServer(
        command,
        host="127.0.0.1",
        port=port,
        title=f"Rollgate {run}",
        public_url=f"http://127.0.0.1:{port}",
    )


@click.command()
@click.argument("run")
@click.option("--port", default=8470, show_default=True, help="Port on 127.0.0.1.")
@click.option(
    "--control",
    is_flag=True,
    help="Let the browser decide gates (as `rollgate attach`); read-only without it.",
)
def serve(run: str, port: int, control: bool) -> int:
    """Serve RUN's console to a browser on 127.0.0.1, at a URL with a random token (printed
    once); Ctrl-C stops serving, the run goes on."""
    try:
        import textual_serve  # noqa: F401
    except ImportError:
        from rollgate.core.errors import UserError

        raise UserError("rollgate serve needs textual-serve: pip install textual-serve") from None
    token = secrets.token_urlsafe(24)
    server = make_server(run, port, control, token)
    click.echo(f"http://127.0.0.1:{port}/{token}/  ({'control' if control else 'read-only'})")
    server.serve()
    return 0
