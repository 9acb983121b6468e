"""``python -m service [--host H] [--port P]``: serve the API with uvicorn.

Settings come from the ``STRSEARCH_*`` environment (service/settings.py). When the server
listens, one line ``strsearch service listening on <url>`` goes to stdout (``--port 0`` picks a
free port; the line tells which); logs go to stderr. SIGTERM or SIGINT stops it gracefully
(requests in flight finish) and the process exits with status 0.
"""

from __future__ import annotations

import argparse
import copy
import signal
import socket
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from service.app import create_app
from service.settings import Settings

READY_PREFIX = "strsearch service listening on "


def _log_config() -> dict[str, Any]:
    """uvicorn's logging, all on stderr (stdout carries only the ready line), plus ``service``."""
    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    config["loggers"]["service"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class _Server(uvicorn.Server):
    """A uvicorn server that prints its URL once it accepts connections."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            port = self.config.port
            for server in getattr(self, "servers", []):
                for sock in server.sockets:
                    port = sock.getsockname()[1]
                    break
            print(READY_PREFIX + _url(self.config.host, port), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; 0 on a clean stop, 2 on bad settings."""
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free)")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app = create_app(settings)
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_config=_log_config(), lifespan="on"
    )
    server = _Server(config)

    def stop(signum: int, frame: FrameType | None) -> None:
        # Also the handler uvicorn restores and re-raises the signal to after its own graceful
        # shutdown: stopping again is a no-op, so the process exits 0 instead of dying of it.
        server.should_exit = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
