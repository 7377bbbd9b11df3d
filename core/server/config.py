"""Where the server listens and the limits it keeps. A non-loopback address needs an API key: the check lives here."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
DEFAULT_WAITING_LIMIT = 16


class ServerConfigError(ValueError):
    """The server cannot start with these settings; the message says why and what to do."""


@dataclass(frozen=True)
class ServerConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT                 # 0: any free port (the real one is reported once listening)
    api_key: str | None = None               # required as "Authorization: Bearer KEY" when set
    cors_origins: tuple[str, ...] = ()       # browser origins allowed to call the API; none = CORS off
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_tokens_limit: int | None = None      # None: the loaded model's context is the limit
    waiting_limit: int = DEFAULT_WAITING_LIMIT   # requests allowed to wait for a slot before 429

    def checked(self) -> "ServerConfig":
        """Itself, or ServerConfigError for settings that would be unsafe or cannot work."""
        if not 0 <= self.port <= 65535:
            raise ServerConfigError(f"The port must be between 0 and 65535, not {self.port}.")
        if self.api_key is not None and not self.api_key.strip():
            raise ServerConfigError("The API key is empty: give a key, or none on a loopback address.")
        if not is_loopback(self.host) and not self.api_key:
            raise ServerConfigError(
                f"Listening on {self.host} opens the server to other computers: give an API key "
                "(--api-key KEY) so that only clients who know it are answered.")
        if self.max_body_bytes < 1024:
            raise ServerConfigError("The request body limit must be at least 1 KiB.")
        if self.waiting_limit < 0:
            raise ServerConfigError("The waiting limit cannot be negative.")
        return self


def is_loopback(host: str) -> bool:
    """True for addresses only this computer can reach (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False                           # a host name: it may resolve to anything


def url_host(host: str) -> str:
    """The host as it goes into a URL (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
