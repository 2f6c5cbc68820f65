"""How ``jackfield serve`` listens and stops.

The socket is bound before anything else starts, so a port in use or a host that does
not exist is a one-line user error, and the runtime never starts for a server that
cannot listen. On SIGTERM the server first ends the live event streams: they never end
by themselves, and uvicorn waits for open responses before it shuts the app (and the
runtime) down -- an open browser tab would otherwise hold the shutdown for the whole
grace period and then be cancelled with an error in the log. SIGHUP (the terminal or
the ssh session that started it closed) stops it the same way: by default it killed the
process at once, leaving the messages it was delivering in flight until their lease ran
out.

A stop takes at most ``stop_seconds(settings)`` from the signal: the grace of requests,
then of deliveries, then ``EXIT_GRACE_SECONDS``. Past it the process exits anyway -- a
database that stopped answering would otherwise hold the shutdown for as long as it
does (minutes); what was in flight then is recovered by its lease, as after a kill.

Once the app and runtime have stopped, the process gets ``EXIT_GRACE_SECONDS`` to exit.
A provider's sync call stuck in a worker thread (a ``poll`` that never returns) would
otherwise keep it alive for ever after Ctrl-C: Python joins those threads on exit, and
cancelling a task does not stop its thread. (SIGTERM is re-raised with the default
action after shutdown, which ends the process anyway.)
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import uvicorn

from ..api import begin_shutdown
from ..kernel.redaction import get_logger
from ..settings import Settings
from .output import fail

GRACE_SECONDS = 5
"""How long requests still running at shutdown may take to finish."""
EXIT_GRACE_SECONDS = 5.0
"""How long the process may take to exit once the app and runtime have stopped."""
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""The signals that stop ``serve`` gracefully (uvicorn itself takes INT and TERM only)."""
log = get_logger(__name__)


def stop_seconds(settings: Settings) -> float:
    """How long ``serve`` may take to stop once signalled, whatever its database does."""
    return GRACE_SECONDS + settings.runtime_shutdown_grace_seconds + EXIT_GRACE_SECONDS


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port`` (port 0: any free port), or a user error."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart right away
        sock.bind((host, port))
        sock.listen()
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        fail(f"cannot listen on {host}:{port}: {reason}", "choose another --host or --port")
    return sock


class Server(uvicorn.Server):
    """uvicorn's server for one app, which ends the app's event streams as it starts
    to shut down."""

    def __init__(self, app: Any, stop_within: float) -> None:
        super().__init__(
            uvicorn.Config(app, log_config=None, timeout_graceful_shutdown=GRACE_SECONDS)
        )
        self._app = app
        self._signal = 0
        self._stop_within = stop_within

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        """uvicorn's, for ``STOP_SIGNALS``: handled while serving, then restored, and the
        one that stopped the server raised again (its default action ends the process).
        A SIGHUP ignored at start stays ignored: ``nohup jackfield serve`` is how a server
        is kept running after the session that started it closes."""
        if threading.current_thread() is not threading.main_thread():
            yield  # (signals reach the main thread only)
            return
        nohup = signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        signals = [sig for sig in STOP_SIGNALS if not (nohup and sig == signal.SIGHUP)]
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in signals}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self._signal:
            signal.raise_signal(self._signal)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self._signal:  # timed from the signal: the shutdown itself may be stuck
            _exit_unless_done_within(
                self._stop_within,
                128 + sig,
                "still stopping %.0fs after the signal (is the database answering?): exiting"
                " now; messages in flight return to the outbox when their lease expires",
            )
        self._signal = sig
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._signal:
            log.info("%s received: stopping", signal.Signals(self._signal).name)
        await begin_shutdown(self._app)
        await super().shutdown(sockets)
        _exit_unless_done_within(
            EXIT_GRACE_SECONDS,
            128 + self._signal if self._signal else 0,
            "threads still busy %.0fs after shutdown (a provider call that does not"
            " return): exiting without them",
        )


def _exit_unless_done_within(seconds: float, code: int, why: str) -> None:
    """End the process with ``code`` after ``seconds`` unless it has exited by then,
    logging ``why`` (formatted with ``seconds``)."""

    def leave() -> None:
        log.warning(why, seconds)
        logging.shutdown()  # flush the log
        os._exit(code)

    timer = threading.Timer(seconds, leave)
    timer.daemon = True  # it ends with the process when nothing is stuck
    timer.start()
