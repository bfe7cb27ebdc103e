"""A stand-in for Mirantis' cri-dockerd, which Debian does not package: the CRI v1 over
gRPC on a unix socket, answered from a real dockerd.

What kedge and keadm ask of it, as cri-dockerd answers (github.com/Mirantis/cri-dockerd,
core/docker_service.go Version, Status; core/image.go ImageStatus, PullImage): the
runtime name "docker" with dockerd's own version; RuntimeReady while dockerd answers;
NetworkReady only once its CNI directory holds a config (network plugin "cni" is the
default); images looked up and pulled through dockerd, so its registry mirrors apply.
Everything else answers Unimplemented. The defaults are cmd/cri/options/options.go's:
endpoint unix:///var/run/cri-dockerd.sock, pause image registry.k8s.io/pause:3.10 (v0.3.17 on;
3.9 for v0.3.12-v0.3.16); `--version` as cri-dockerd prints it.

Run: python -m tests.kubeedge_sim.cri_dockerd --container-runtime-endpoint unix://SOCK
     --docker-endpoint unix://DOCKER [--pod-infra-container-image IMG] [--cni-conf-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import struct
import sys
import urllib.parse
from pathlib import Path

import h2.config
import h2.connection
import h2.events

from kedge.cri import field, fields
from tests.harness.dockerd import api

UNKNOWN, UNIMPLEMENTED = 2, 12


class GrpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class CriDockerd:
    def __init__(self, docker: str, sandbox_image: str, cni_conf_dir: Path) -> None:
        self.docker, self.sandbox_image, self.cni_conf_dir = docker, sandbox_image, cni_conf_dir

    def _docker(self, method: str, path: str) -> tuple[int, bytes]:
        try:
            return api(self.docker, method, path, b"" if method == "POST" else None, timeout=300)
        except OSError as exc:
            # libdocker's client error, inside cri-dockerd's wrapping
            raise GrpcError(UNKNOWN, f"failed to get docker version from dockerd: Cannot connect to "
                            f"the Docker daemon at unix://{self.docker}. Is the docker daemon running?") from exc  # fmt: skip

    def Version(self, _: bytes) -> bytes:  # noqa: N802 — the gRPC method's name
        status, body = self._docker("GET", "/version")
        version = json.loads(body).get("Version", "") if status == 200 else ""
        return field(1, "0.1.0") + field(2, "docker") + field(3, version) + field(4, "v1")

    def Status(self, request: bytes) -> bytes:  # noqa: N802
        ready = self._docker("GET", "/_ping")[0] == 200
        has_config = self.cni_conf_dir.is_dir() and any(
            p.suffix in (".conf", ".conflist", ".json") for p in self.cni_conf_dir.iterdir()
        )
        runtime = field(1, "RuntimeReady") + (b"\x10\x01" if ready else b"")
        network = field(1, "NetworkReady") + (b"\x10\x01" if has_config else (
            field(3, "NetworkPluginNotReady") + field(4, "docker: network plugin is not ready: cni config uninitialized")))  # fmt: skip
        answer = field(1, field(1, runtime) + field(1, network))
        if request == b"\x08\x01":
            # cri-dockerd gives no verbose info; the simulated keadm learns the pause image
            # its RunPodSandbox would need this way (ensureSandboxImageExists in cri-dockerd).
            config = json.dumps({"sandboxImage": self.sandbox_image, "runtime": "docker"})
            answer += field(2, field(1, "config") + field(2, config))
        return answer

    def ImageStatus(self, request: bytes) -> bytes:  # noqa: N802
        spec = next((v for n, v in fields(request) if n == 1 and isinstance(v, bytes)), b"")
        ref = next((v.decode() for n, v in fields(spec) if n == 1 and isinstance(v, bytes)), "")
        status, body = self._docker("GET", f"/images/{ref}/json")
        if status != 200:
            return b""  # no image: an empty ImageStatusResponse
        found = json.loads(body)
        image = field(1, found["Id"]) + b"".join(field(2, t) for t in found.get("RepoTags") or [])
        return field(1, image)

    def PullImage(self, request: bytes) -> bytes:  # noqa: N802
        spec = next((v for n, v in fields(request) if n == 1 and isinstance(v, bytes)), b"")
        ref = next((v.decode() for n, v in fields(spec) if n == 1 and isinstance(v, bytes)), "")
        repo, _, tag = ref.rpartition(":")
        query = urllib.parse.urlencode({"fromImage": repo, "tag": tag})
        status, body = self._docker("POST", f"/images/create?{query}")
        stream = body.decode(errors="replace")
        failed = next((json.loads(ln)["error"] for ln in stream.splitlines()
                       if ln.strip().startswith("{") and "error" in json.loads(ln)), None)  # fmt: skip
        if status != 200 or failed:
            message = failed or json.loads(body or b"{}").get("message", stream.strip())
            raise GrpcError(UNKNOWN, f"Error response from daemon: {message}")
        status, body = self._docker("GET", f"/images/{ref}/json")
        return field(1, json.loads(body)["Id"] if status == 200 else ref)

    def ImageFsInfo(self, _: bytes) -> bytes:  # noqa: N802
        return b""


async def serve(
    conn_reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cri: CriDockerd
) -> None:
    h2c = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
    )
    h2c.initiate_connection()
    writer.write(h2c.data_to_send())
    paths: dict[int, str] = {}
    bodies: dict[int, bytearray] = {}
    with contextlib.suppress(ConnectionError, OSError):
        while data := await conn_reader.read(65536):
            for event in h2c.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    headers = {str(k): str(v) for k, v in event.headers or []}
                    paths[event.stream_id] = headers.get(":path", "")
                    bodies[event.stream_id] = bytearray()
                elif isinstance(event, h2.events.DataReceived):
                    bodies[event.stream_id] += event.data or b""
                    h2c.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    await answer(
                        h2c,
                        event.stream_id,
                        paths.pop(event.stream_id),
                        bytes(bodies.pop(event.stream_id)),
                        cri,
                    )
            writer.write(h2c.data_to_send())
            await writer.drain()
    writer.close()


async def answer(
    h2c: h2.connection.H2Connection, stream: int, path: str, body: bytes, cri: CriDockerd
) -> None:
    service, _, method = path.strip("/").partition("/")
    message = body[5:]
    handler = (
        getattr(cri, method, None)
        if service in ("runtime.v1.RuntimeService", "runtime.v1.ImageService")
        else None
    )
    h2c.send_headers(stream, [(":status", "200"), ("content-type", "application/grpc")])
    try:
        if handler is None:
            raise GrpcError(UNIMPLEMENTED, f"unknown service {service}" if service not in (
                "runtime.v1.RuntimeService", "runtime.v1.ImageService") else f"unknown method {method} for service {service}")  # fmt: skip
        reply = await asyncio.to_thread(handler, message)
    except GrpcError as exc:
        h2c.send_headers(stream, [("grpc-status", str(exc.code)), ("grpc-message", urllib.parse.quote(str(exc)))],
                         end_stream=True)  # fmt: skip
        return
    h2c.send_data(stream, b"\0" + struct.pack(">I", len(reply)) + reply)
    h2c.send_headers(stream, [("grpc-status", "0")], end_stream=True)


VERSION = "0.3.17"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="cri-dockerd")
    p.add_argument("--container-runtime-endpoint", default="unix:///var/run/cri-dockerd.sock")
    p.add_argument("--docker-endpoint", default="unix:///var/run/docker.sock")
    p.add_argument("--pod-infra-container-image", default="registry.k8s.io/pause:3.10")
    p.add_argument("--version", action="version", version=f"cri-dockerd {VERSION} (0a3a4e5)")
    p.add_argument("--network-plugin", default="cni")
    p.add_argument("--cni-conf-dir", default="/etc/cni/net.d")
    args = p.parse_args(argv)
    sock = Path(args.container_runtime_endpoint.removeprefix("unix://"))
    cri = CriDockerd(args.docker_endpoint.removeprefix("unix://"), args.pod_infra_container_image,
                     Path(args.cni_conf_dir))  # fmt: skip

    sock.unlink(missing_ok=True)

    async def run() -> None:
        server = await asyncio.start_unix_server(lambda r, w: serve(r, w, cri), path=str(sock))
        print(f"cri-dockerd: serving {args.container_runtime_endpoint}", flush=True)
        async with server:
            await server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
