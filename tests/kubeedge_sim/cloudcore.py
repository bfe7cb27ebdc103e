"""cloudcore's edge-facing ports on loopback: cloudhub's websocket port (TLS) and the
certificate port (HTTPS: GET /ca.crt serves the CA in DER, as cloudcore v1.13 does).

Threaded, blocking servers: every connection is closed by the time the context exits,
whatever state its TLS handshake ended in.
"""

from __future__ import annotations

import contextlib
import http.server
import socketserver
import ssl
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kedge.names import version_tuple
from tests.kubeedge_sim.pki import CloudcorePKI


class _TLSMixin:
    """Handshake in the connection's own thread, so a failed one only ends that thread."""

    ssl_context: ssl.SSLContext

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # the client rejected us, or went away: as cloudcore, just drop it
        try:
            super().finish_request(tls, client_address)  # type: ignore[misc]
        finally:
            with contextlib.suppress(OSError):
                tls.close()


class _CertHandler(http.server.BaseHTTPRequestHandler):
    server: _CertServer

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        server = self.server
        if self.path == "/ca.crt":
            self._send(200, server.pki.ca_der)
        elif self.path == "/edge.crt":
            self._edge_crt()
        elif self.path.startswith("/node/") and version_tuple(server.version) >= (1, 20, 0):
            # cloud/pkg/cloudhub/servers/httpserver (v1.20 on), node.CheckNode: the Node
            # from the API server; WriteErrorString(404, "Node not found") when it has none.
            name = self.path.removeprefix("/node/")
            if name in server.nodes:
                self._send(200, b"")
            else:
                self._send(404, b"Node not found")
        else:
            self._send(404, b"404 page not found\n")

    def _edge_crt(self) -> None:
        server = self.server
        length = int(self.headers.get("Content-Length") or 0)
        csr = self.rfile.read(length)  # read the CSR first: an unread body resets the TLS stream
        if server.refuse_edge_crt:
            self._send(403, b"certificate requests are refused by this cloudcore\n")
            return
        auth = self.headers.get("Authorization", "")
        node = self.headers.get("NodeName", "")
        if not auth.startswith("Bearer ") or not server.pki.check_bearer(auth[len("Bearer ") :]):
            # cloudcore logs "failed to sign the certificate for edgenode: X, invalid token"
            server.events.append(
                f"failed to sign the certificate for edgenode: {node}, invalid token"
            )
            self._send(401, b"Invalid authorization token")
            return
        server.events.append(f"signed the certificate for edgenode: {node}")
        self._send(200, server.pki.sign_csr(csr, node))

    def log_message(self, *args: object) -> None:
        pass


class _CertServer(_TLSMixin, http.server.ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True
    pki: CloudcorePKI
    refuse_edge_crt: bool
    events: list[str]
    version: str
    nodes: set[str]


class _HubHandler(socketserver.StreamRequestHandler):
    """cloudhub's websocket: the edge's upgrade request names its node (header node_id,
    path /<project>/<node>/events); once it is up, edged registers the node and
    edgecontroller creates the Node (cloud/pkg/edgecontroller/controller/upstream.go@v1.13.0,
    createNode: `uc.kubeClient.CoreV1().Nodes().Create(...)`). The certificate server
    never creates Nodes."""

    server: _WebsocketServer

    def handle(self) -> None:
        self.request.settimeout(10)
        try:
            request = self.rfile.readline(4096).decode("latin-1")
            headers = {}
            while line := self.rfile.readline(4096).decode("latin-1").strip():
                key, _, value = line.partition(":")
                headers[key.strip().lower()] = value.strip()
        except OSError:
            return
        node = headers.get("node_id", "")
        if self.server.refuse_websocket or not request.startswith("GET ") or not node:
            return  # hang up: the edge's handshake fails
        self.wfile.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\n\r\n")  # fmt: skip
        self.server.events.append(f"edge node {node} connected")
        self.server.nodes.add(node)  # edgecontroller created the Node
        self.server.kubelet_versions[node] = headers.get("kubelet_version", "")
        if self.server.on_registered is not None:
            self.server.on_registered(node)
        self.request.settimeout(None)
        with contextlib.suppress(OSError):
            while self.request.recv(4096):
                pass  # held until the edge goes away


class _WebsocketServer(_TLSMixin, socketserver.ThreadingTCPServer):
    daemon_threads = True  # held connections end with the edge, not with the test
    allow_reuse_address = True
    refuse_websocket: bool
    events: list[str]
    nodes: set[str]
    kubelet_versions: dict[str, str]
    on_registered: Callable[[str], None] | None


@dataclass
class CloudcoreSim:
    pki: CloudcorePKI
    host: str = "127.0.0.1"
    refuse_edge_crt: bool = False  # fault: the certificate port turns edges away
    events: list[str] = field(default_factory=list)  # what cloudcore would log
    version: str = "v1.13.0"  # from v1.20 the certificate port also answers GET /node/<name>
    nodes: set[str] = field(default_factory=set)  # the Nodes the cluster has
    kubelet_versions: dict[str, str] = field(default_factory=dict)  # what each edge's edged reports
    refuse_websocket: bool = False  # fault: port 10000 turns edges away (a firewall, say)
    on_registered: Callable[[str], None] | None = None  # an edge connected to cloudhub
    _servers: list[socketserver.BaseServer] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    websocket_port: int = 0
    cert_port: int = 0

    @property
    def cloudcore(self) -> str:
        return f"{self.host}:{self.websocket_port}"

    def _ssl(self) -> ssl.SSLContext:
        with tempfile.TemporaryDirectory(prefix="cloudcore-") as tmp:
            self.pki.write_server_pem(f"{tmp}/server.crt", f"{tmp}/server.key")
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(Path(tmp) / "server.crt", Path(tmp) / "server.key")
        return ctx

    def __enter__(self) -> CloudcoreSim:
        ctx = self._ssl()
        cert = _CertServer((self.host, self.cert_port), _CertHandler)
        cert.pki, cert.ssl_context = self.pki, ctx
        cert.refuse_edge_crt, cert.events = self.refuse_edge_crt, self.events
        cert.version, cert.nodes = self.version, self.nodes
        ws = _WebsocketServer((self.host, self.websocket_port), _HubHandler)
        ws.ssl_context = ctx
        ws.refuse_websocket, ws.events, ws.on_registered, ws.nodes, ws.kubelet_versions = (
            self.refuse_websocket, self.events, self.on_registered, self.nodes,
            self.kubelet_versions)  # fmt: skip
        self.cert_port = cert.server_address[1]
        self.websocket_port = ws.server_address[1]
        for server in (cert, ws):
            thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()  # joins the connection threads (block_on_close)
        for thread in self._threads:
            thread.join(10)
