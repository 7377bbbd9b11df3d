"""Reading a model file's bytes over HTTP(S): TLS trust, redirects that keep the token home, proxies, refusals,
dropped and stalled connections — against real local servers."""
from __future__ import annotations

import os
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trustme

from core.models.downloads.transfer import (
    StreamBroken,
    StreamRedirectRefused,
    StreamRefused,
    StreamUntrusted,
    open_byte_stream,
)

BODY = os.urandom(3 << 20)


class _Handler(BaseHTTPRequestHandler):
    """/file serves BODY; /redirect-other and /redirect-same redirect; /refused 403; /short and /stall break."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, str | None]]  # (path as requested, Authorization), per server
    other_origin = ""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.seen.append((self.path, self.headers.get("Authorization")))
        path = self.path.split("://", 1)[-1].split("/", 1)[-1]  # a proxy receives the absolute URL
        if path == "file":
            self._send(BODY)
        elif path == "redirect-other":
            self._redirect(f"{self.server.other_origin}/file")
        elif path == "redirect-same":
            self._redirect("/file")
        elif path == "redirect-file":
            self._redirect("file:///etc/passwd")
        elif path == "redirect-loop":
            self._redirect("/redirect-loop")
        elif path == "refused":
            self.send_response(403)
            self.send_header("X-Error-Message", "Access to this file is restricted.")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path in ("short", "stall"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY[: 1 << 20])
            self.wfile.flush()
            if path == "stall":
                time.sleep(2.0)
            self.close_connection = True
        else:
            self.send_error(404)

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def _serve(tls: ssl.SSLContext | None = None) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.seen = []
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    scheme = "https" if tls else "http"
    return server, f"{scheme}://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def plain_server():
    servers = []

    def start(tls=None):
        server, url = _serve(tls)
        servers.append(server)
        return server, url

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                 "NO_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)


def _read_all(url: str, headers=None, stall_seconds: float = 10.0) -> bytes:
    with open_byte_stream(url, headers or {}, stall_seconds=stall_seconds) as stream:
        assert stream.status == 200
        blocks = []
        while block := stream.read():
            blocks.append(block)
    return b"".join(blocks)


def test_a_file_is_read_whole(plain_server):
    _, url = plain_server()
    assert _read_all(f"{url}/file") == BODY


def test_an_untrusted_certificate_is_refused_with_a_way_out(plain_server, tmp_path):
    authority = trustme.CA()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(tls)
    _, url = plain_server(tls)
    with pytest.raises(StreamUntrusted, match="127.0.0.1 could not be verified.*SSL_CERT_FILE"):
        open_byte_stream(f"{url}/file", {}, stall_seconds=10)


def test_ssl_cert_file_names_the_networks_own_authority(plain_server, tmp_path, monkeypatch):
    authority = trustme.CA()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(tls)
    _, url = plain_server(tls)
    pem = tmp_path / "company-ca.pem"
    authority.cert_pem.write_to_path(str(pem))
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))
    assert _read_all(f"{url}/file") == BODY


def test_the_token_is_not_sent_to_another_host_after_a_redirect(plain_server):
    hub, hub_url = plain_server()
    cdn, cdn_url = plain_server()
    hub.other_origin = cdn_url
    assert _read_all(f"{hub_url}/redirect-other", {"Authorization": "Bearer hf_secret"}) == BODY
    assert hub.seen == [("/redirect-other", "Bearer hf_secret")]
    assert cdn.seen == [("/file", None)]


def test_the_token_follows_a_redirect_on_the_same_host(plain_server):
    hub, hub_url = plain_server()
    assert _read_all(f"{hub_url}/redirect-same", {"Authorization": "Bearer hf_secret"}) == BODY
    assert hub.seen == [("/redirect-same", "Bearer hf_secret"), ("/file", "Bearer hf_secret")]


def test_a_redirect_to_a_file_address_is_refused_saying_why(plain_server):
    server, url = plain_server()
    with pytest.raises(StreamRedirectRefused) as refused:
        open_byte_stream(f"{url}/redirect-file", {}, stall_seconds=10)
    assert str(refused.value) == "the hub redirected to a file:// address, which LlamaDesk does not follow"
    assert server.seen == [("/redirect-file", None)]


def test_a_redirect_loop_ends_after_a_few_requests(plain_server):
    server, url = plain_server()
    with pytest.raises(StreamRedirectRefused, match="kept redirecting"):
        open_byte_stream(f"{url}/redirect-loop", {}, stall_seconds=10)
    assert 1 < len(server.seen) <= 11


def test_a_refusal_carries_the_status_and_the_servers_reason(plain_server):
    _, url = plain_server()
    with pytest.raises(StreamRefused, match="restricted") as refused:
        open_byte_stream(f"{url}/refused", {}, stall_seconds=10)
    assert refused.value.status == 403


def test_bytes_before_a_dropped_connection_are_returned_then_it_is_broken(plain_server):
    _, url = plain_server()
    received = 0
    with open_byte_stream(f"{url}/short", {}, stall_seconds=10) as stream:
        with pytest.raises(StreamBroken, match="dropped"):
            while block := stream.read():
                received += len(block)
    assert received == 1 << 20


def test_a_stall_is_reported_after_the_stall_time(plain_server):
    _, url = plain_server()
    with open_byte_stream(f"{url}/stall", {}, stall_seconds=0.3) as stream:
        started = time.monotonic()
        with pytest.raises(StreamBroken, match="stalled"):
            while stream.read():
                pass
    assert time.monotonic() - started < 1.5


def test_nobody_listening_is_unreachable(plain_server):
    server, url = plain_server()
    server.shutdown()
    server.server_close()
    with pytest.raises(StreamBroken, match="could not be reached"):
        open_byte_stream(f"{url}/file", {}, stall_seconds=2)


def test_the_proxy_from_the_environment_is_used(plain_server, monkeypatch):
    origin, origin_url = plain_server()
    proxy, proxy_url = plain_server()
    monkeypatch.setenv("http_proxy", proxy_url)
    assert _read_all(f"{origin_url}/file") == BODY
    assert proxy.seen == [(f"{origin_url}/file", None)]
    assert origin.seen == []
