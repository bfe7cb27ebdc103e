"""`kedge-cloud-api broker init`: a local mosquitto made ready for kedge — a TLS listener
with a certificate from the cloud API's own CA, the dynamic security plugin holding the
cloud API's identities (and, later, one per board), no anonymous access, limits that
never drop an acknowledged report. Idempotent: what is already right is kept and said so.
It restarts nothing; the caller says (or does, when asked) what must be restarted.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
from dataclasses import dataclass, field
from pathlib import Path

from cloud_api.broker import identities
from cloud_api.broker.pki import Openssl
from cloud_api.broker.record import DIRECTORY, BrokerRecord, record_path
from kedge.errors import UserError
from kedge.host import Host
from kedge.private_files import read_secret, write_private
from kedge.wire import Change

PLUGIN_GLOB = "*/mosquitto_dynamic_security.so"  # under /usr/lib
CONF_NAME = "kedge.conf"

# Why each line: docs/mqtt.md "The broker".
LIMITS = """\
# QoS 1 reports queued for a client that is behind or away (the cloud API during a burst
# or a restart) are never dropped: mosquitto's default, 1000, silently drops the rest.
max_queued_messages 0
# ...but never without bound: while the API is away they wait in the broker's memory.
# 512 MiB is days of reports of a large fleet; beyond it mosquitto drops new ones.
max_queued_bytes 536870912
# The cloud API's session and the reports queued for it survive a broker restart.
persistence true
autosave_interval 60
# A session of an API process that went away is kept as long as it asks (a week).
persistent_client_expiration 8d
# A kedge report is a few KB, and the cloud API reads nothing over 64 KiB (its MQTT 5
# maximum packet size): refuse anything larger before it is queued or retained anywhere.
# With a board's publish topics literal, this bounds what one board can retain.
message_size_limit 65536
"""


def find_plugin() -> str:
    found = sorted(str(p) for p in Path("/usr/lib").glob(PLUGIN_GLOB))
    if not found:
        raise UserError(
            f"mosquitto's dynamic security plugin is not installed (/usr/lib/{PLUGIN_GLOB}): "
            "apt install mosquitto"
        )
    return found[0]


@dataclass
class BrokerSetup:
    state_dir: Path
    board_hosts: list[str]
    port: int = 8883
    listen_address: str | None = None
    loopback_port: int | None = None
    conf_dir: Path = Path("/etc/mosquitto/conf.d")
    cert_dir: Path = Path("/etc/mosquitto/kedge")
    dynsec_file: Path = Path("/var/lib/mosquitto/kedge-dynamic-security.json")
    owner: str = "mosquitto"
    topic_prefix: str = "kedge"
    changes: list[Change] = field(default_factory=list)

    @property
    def private(self) -> Path:
        return self.state_dir / DIRECTORY

    @property
    def names(self) -> list[str]:
        extra = [n for n in ("127.0.0.1", "localhost") if n not in self.board_hosts]
        return [*self.board_hosts, *extra]

    def _did(self, action: str, target: Path, detail: str) -> None:
        self.changes.append(Change(action=action, target=str(target), detail=detail))

    async def run(self, host: Host) -> list[Change]:
        if os.geteuid() != 0:
            raise UserError(
                "broker init writes mosquitto's configuration and keys: run it as root (sudo)"
            )
        plugin = find_plugin()
        try:
            uid, gid = pwd.getpwnam(self.owner).pw_uid, grp.getgrnam(self.owner).gr_gid
        except KeyError:
            raise UserError(
                f"--owner {self.owner}: no such user and group (the one mosquitto runs as; "
                "apt install mosquitto makes 'mosquitto')"
            ) from None
        self.private.mkdir(mode=0o700, parents=True, exist_ok=True)
        admin, cloud = self._passwords()
        await self._certificates(host, gid)
        self._identities(admin, cloud, uid, gid)
        self._config(plugin)
        self._record()
        return self.changes

    def _passwords(self) -> tuple[Path, Path]:
        files = (self.private / "admin.password", self.private / "cloud.password")
        if self.dynsec_file.exists() and not all(f.exists() for f in files):
            raise UserError(
                f"{self.dynsec_file} holds identities whose passwords are not in {self.private}: "
                f"remove {self.dynsec_file} to start again (every board must then enroll again)"
            )
        for f in files:
            if f.exists():
                read_secret(f, str(f))  # unreadable or empty: say so now, not at enrollment
                self._did("keep", f, "password")
            else:
                write_private(f, identities.new_password() + "\n")
                self._did("write", f, "a new password (0600)")
        return files

    async def _certificates(self, host: Host, gid: int) -> None:
        ssl = Openssl(host)
        ca_key, ca_cert = self.private / "ca.key", self.private / "ca.crt"
        if ca_key.exists() and ca_cert.exists():
            self._did("keep", ca_cert, "the broker CA boards pin")
        else:
            await ssl.make_ca(ca_key, ca_cert, "kedge broker CA")
            self._did(
                "write", ca_cert, "a new broker CA (its key: ca.key, 0600, never leaves here)"
            )
        self.cert_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        os.chown(self.cert_dir, 0, gid)
        key, cert, pinned = (self.cert_dir / n for n in ("server.key", "server.crt", "ca.crt"))
        if pinned.exists() and pinned.read_bytes() == ca_cert.read_bytes():
            self._did("keep", pinned, "copy of the CA")
        else:
            write_private(pinned, ca_cert.read_bytes(), mode=0o644)
            self._did("write", pinned, "copy of the CA")
        if (
            key.exists()
            and cert.exists()
            and (await ssl.describe(ca_cert, cert)).serves(self.names)
        ):
            self._did("keep", cert, f"server certificate for {', '.join(self.names)}")
            return
        await ssl.make_server(ca_key, ca_cert, key, cert, self.names)
        os.chown(key, 0, gid)
        key.chmod(0o640)
        cert.chmod(0o644)
        self._did("write", cert, f"server certificate for {', '.join(self.names)}")

    def _identities(self, admin: Path, cloud: Path, uid: int, gid: int) -> None:
        if self.dynsec_file.exists():
            try:
                clients = {
                    c.get("username") for c in json.loads(self.dynsec_file.read_bytes())["clients"]
                }
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise UserError(
                    f"{self.dynsec_file}: not a dynamic security file ({exc})"
                ) from None
            wanted = {identities.ADMIN_USERNAME, identities.CLOUD_USERNAME}
            if not wanted <= clients:
                raise UserError(
                    f"{self.dynsec_file} lacks {', '.join(sorted(wanted - clients))}: it was not "
                    "made by kedge-cloud-api broker init; move it away and run this again"
                )
            boards = sum(1 for c in clients if str(c).startswith(identities.BOARD_PREFIX))
            self._did(
                "keep", self.dynsec_file, f"identities: the cloud API's two and {boards} boards'"
            )
            return
        config = identities.initial_config(
            read_secret(admin, str(admin)), read_secret(cloud, str(cloud)), self.topic_prefix
        )
        self.dynsec_file.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        write_private(self.dynsec_file, json.dumps(config, indent=2) + "\n")
        os.chown(self.dynsec_file, uid, gid)  # the broker rewrites it at every change
        self._did("write", self.dynsec_file, f"identities {identities.ADMIN_USERNAME} and "
                  f"{identities.CLOUD_USERNAME}; no board yet")  # fmt: skip

    def config_text(self, plugin: str) -> str:
        listen = f"listener {self.port}" + (
            f" {self.listen_address}" if self.listen_address else ""
        )
        lines = [
            "# Written by kedge-cloud-api broker init; run it again instead of editing this file.",
            "per_listener_settings false",
            "allow_anonymous false",
            f"plugin {plugin}",
            f"plugin_opt_config_file {self.dynsec_file}",
            "",
            "# Boards and the cloud API: TLS with the kedge broker CA's certificate.",
            listen,
            f"cafile {self.cert_dir / 'ca.crt'}",
            f"certfile {self.cert_dir / 'server.crt'}",
            f"keyfile {self.cert_dir / 'server.key'}",
            "tls_version tlsv1.2",
        ]
        if self.loopback_port:
            lines += ["", "# Asked for (--loopback-port): plain MQTT, this machine only, same identities.",
                      f"listener {self.loopback_port} 127.0.0.1"]  # fmt: skip
        return "\n".join(lines) + "\n\n" + LIMITS

    def _config(self, plugin: str) -> None:
        path = self.conf_dir / CONF_NAME
        text = self.config_text(plugin)
        if path.exists() and path.read_text() == text:
            self._did("keep", path, "mosquitto settings")
            return
        self.conf_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        write_private(path, text, mode=0o644)
        self._did("write", path, f"TLS listener on {self.port}, dynamic security, no anonymous"
                  + (f", plain listener 127.0.0.1:{self.loopback_port}" if self.loopback_port else ""))  # fmt: skip

    def _record(self) -> None:
        record = BrokerRecord(
            board_host=self.board_hosts[0], names=self.names, port=self.port,
            loopback_port=self.loopback_port, ca_file=self.private / "ca.crt",
            admin_password_file=self.private / "admin.password",
            cloud_password_file=self.private / "cloud.password", topic_prefix=self.topic_prefix,
        )  # fmt: skip
        path = record_path(self.state_dir)
        text = record.model_dump_json(indent=1) + "\n"
        if path.exists() and path.read_text() == text:
            self._did("keep", path, "what the cloud API reads")
            return
        write_private(path, text)
        self._did("write", path, "what the cloud API reads: [mqtt], [board_mqtt], [broker]")

    def restarts(self) -> list[str]:
        """The services that must restart to read what this run wrote."""
        written = {c.target for c in self.changes if c.action == "write"}
        read_by_broker = {str(p) for p in (self.conf_dir / CONF_NAME, self.cert_dir / "server.crt",
                                           self.cert_dir / "ca.crt", self.dynsec_file)}  # fmt: skip
        return [name for name, files in (("mosquitto", read_by_broker),
                                         ("kedge-cloud-api", {str(record_path(self.state_dir))}))
                if written & files]  # fmt: skip
