"""Running the API on uvicorn in a thread of its own, for the CLI (whose main thread waits for SIGINT/SIGTERM) and
the GUI's Server panel alike. The address it really listens on is known once it listens (port 0 picks one), and
stopping ends the engine worker too."""
from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
import uvicorn

from core.server.config import ServerConfig, url_host
from core.server.model_host import ModelHost

log = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_SECONDS = 5      # answers still streaming when asked to stop get this long to end


@dataclass(frozen=True)
class Listening:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{url_host(self.host)}:{self.port}"


class ServerRunner:
    def __init__(self, app, config: ServerConfig, host: ModelHost) -> None:
        self.config = config
        self.host = host
        self.server = uvicorn.Server(uvicorn.Config(
            app, host=config.host, port=config.port, log_level="warning", lifespan="off", access_log=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS, server_header=False))
        self.listening: Listening | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.failure: BaseException | None = None

    async def _serve(self) -> None:
        serving = asyncio.create_task(self.server.serve())   # in a thread: uvicorn leaves signals alone
        while not self.server.started and not serving.done():
            await asyncio.sleep(0.02)
        if self.server.started:
            self.listening = self._address()
        self._ready.set()
        await serving

    def _address(self) -> Listening:
        socket = self.server.servers[0].sockets[0]
        return Listening(self.config.host, socket.getsockname()[1])

    def start(self, timeout: float = 30.0) -> Listening:
        """Listen from a background thread; returns once listening (OSError if it could not)."""
        self._thread = threading.Thread(target=self._run_in_thread, name="api-server", daemon=True)
        self._thread.start()
        self._ready.wait(timeout)
        if self.listening is None:
            detail = f": {self.failure}" if isinstance(self.failure, OSError) else \
                " (is the port in use, or the address not one of this computer's?)"
            raise OSError(f"The server could not listen on {self.config.host}:{self.config.port}{detail}")
        return self.listening

    def _run_in_thread(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # noqa: BLE001 - reported to start()'s caller
            self.failure = error
        finally:
            self._ready.set()

    def request_stop(self) -> None:
        """Ask the server to stop (from a signal handler or any thread); stop() then waits for it."""
        self.server.should_exit = True

    def wait(self) -> None:
        """Block until the server has stopped serving (in short steps, so the main thread still takes signals)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.2)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop listening, let streaming answers end (GRACEFUL_SHUTDOWN_SECONDS), end the engine. Blocking."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self.host.close()
