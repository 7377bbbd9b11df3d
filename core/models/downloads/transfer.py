"""The body of one file on the hub, read over HTTP(S) in large blocks: what a download writes to disk.

huggingface_hub (httpx) does every other request. A model file's body is read here through the standard
library's urllib instead, because httpx copies each received block three more times on its way out of h11 and
httpcore: on a fast link that cost a third of the throughput of a plain client (bench/bench_downloads.py), and
the bytes of a model file are all that a download is. urllib brings what the transfer needs: proxies from the
environment (``https_proxy``, ``no_proxy``), redirects to the CDN, socket timeouts for stall detection. TLS
trusts what huggingface_hub's own requests trust (httpx's context: the system's authorities, or the ones
``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` name, for networks with their own certificate authority).

    with open_byte_stream(url, headers, stall_seconds=30) as stream:
        while block := stream.read(1 << 20):
            ...
"""
from __future__ import annotations

import functools
import http.client
import os
import ssl
import urllib.error
import urllib.request
from email.message import Message
from urllib.parse import urljoin, urlsplit

import httpx2

READ_BYTES = 1 << 20  # per socket read: smaller reads cost Python overhead per block on a fast link
FOLLOWED_SCHEMES = ("http", "https")


class StreamError(Exception):
    """Reading a file's bytes failed; the message is a short phrase (the caller builds the sentence)."""


class StreamBroken(StreamError):
    """The connection failed, dropped or stalled: worth trying again from the bytes already received."""


class StreamRefused(StreamError):
    """The server answered with an HTTP error; ``reason`` is its own explanation, when it gave one."""

    def __init__(self, status: int, reason: str | None = None) -> None:
        super().__init__(reason or f"the server answered HTTP {status}")
        self.status = status
        self.reason = reason


class StreamRedirectRefused(StreamRefused):
    """The server redirected where LlamaDesk does not go (a ``file://`` address, a loop); the message says why."""


class StreamUntrusted(StreamError):
    """The server's TLS certificate could not be verified."""


class ByteStream:
    """An open response whose body is read block by block; close it (or use ``with``)."""

    def __init__(self, response: http.client.HTTPResponse) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def headers(self) -> Message:
        return self._response.headers

    def read(self, max_bytes: int = READ_BYTES) -> bytes:
        """What one socket read brings, up to ``max_bytes``; b"" at the end of the body.

        One read at a time (not "fill the buffer") so that bytes received before a connection breaks are
        returned, never lost with the error.
        """
        try:
            block = self._response.read1(max_bytes)
        except TimeoutError as error:
            raise StreamBroken("the transfer stalled") from error
        except (http.client.HTTPException, OSError) as error:
            raise StreamBroken("the connection was dropped") from error
        if not block and max_bytes and (self._response.length or 0) > 0:
            raise StreamBroken("the connection was dropped")  # closed before the promised Content-Length
        return block

    def close(self) -> None:
        self._response.close()

    def __enter__(self) -> "ByteStream":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def open_byte_stream(url: str, headers: dict[str, str], *, stall_seconds: float) -> ByteStream:
    """Send a GET (following redirects) and return the open response; raises a StreamError subclass."""
    request = urllib.request.Request(url, headers=headers, method="GET")
    try:
        return ByteStream(_opener().open(request, timeout=stall_seconds))
    except urllib.error.HTTPError as error:
        message = error.headers.get("X-Error-Message") if error.headers else None
        error.close()
        if 300 <= error.code < 400:
            raise StreamRedirectRefused(error.code, _redirect_failure(error)) from error
        raise StreamRefused(error.code, message) from error
    except urllib.error.URLError as error:
        raise _connection_error(error.reason, url) from error
    except (http.client.HTTPException, OSError) as error:
        raise _connection_error(error, url) from error


def _connection_error(reason, url: str) -> StreamError:
    if isinstance(reason, ssl.SSLCertVerificationError):
        host = urlsplit(url).hostname
        return StreamUntrusted(f"the certificate of {host} could not be verified ({reason.verify_message}); if "
                               "your network uses its own certificate authority, point SSL_CERT_FILE at it")
    if isinstance(reason, TimeoutError):
        return StreamBroken("the transfer stalled")
    if isinstance(reason, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError,
                           http.client.HTTPException)):
        return StreamBroken("the connection was dropped")
    return StreamBroken("the server could not be reached")


def unfollowed_redirect(url: str) -> str | None:
    """Why LlamaDesk does not follow a redirect to ``url`` (an absolute address), or None when it does."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in FOLLOWED_SCHEMES:
        return None
    return f"the hub redirected to a {scheme}:// address, which LlamaDesk does not follow"


def _redirect_failure(error: urllib.error.HTTPError) -> str:
    if error.headers is None or not (error.headers.get("Location") or error.headers.get("URI")):
        return f"the hub answered HTTP {error.code} without saying where the file is"
    return "the hub kept redirecting without reaching the file (a redirect loop, or more than 10 redirects)"


class _RedirectKeepingCredentialsHome(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) addresses only, and send the user's Hugging Face token only to the host it was
    meant for."""

    def http_error_302(self, req, fp, code, msg, headers):
        location = headers.get("Location") or headers.get("URI")
        refusal = unfollowed_redirect(urljoin(req.full_url, location)) if location else None
        if refusal:  # urllib itself would follow ftp:// and refuse file:// with a bare "HTTP 302"
            fp.close()
            raise StreamRedirectRefused(code, refusal)
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        follow = super().redirect_request(req, fp, code, msg, headers, newurl)
        if follow is not None and _origin(newurl) != _origin(req.full_url):
            for name in ("Authorization", "Cookie"):
                follow.headers.pop(name, None)
                follow.unredirected_hdrs.pop(name, None)
        return follow


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


def _tls_context() -> ssl.SSLContext:
    return _tls_context_for(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=4)
def _tls_context_for(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    # httpx's own context, so a file's bytes trust exactly what huggingface_hub's requests trust (it reads the
    # two variables itself). Loading authorities takes ~20 ms: once per setting, not once per request.
    return httpx2.create_ssl_context()


def _opener() -> urllib.request.OpenerDirector:
    # Built per request (cheap): proxy and certificate variables are read when a download starts, as the rest
    # of the hub access does.
    return urllib.request.build_opener(urllib.request.HTTPSHandler(context=_tls_context()),
                                       _RedirectKeepingCredentialsHome())
