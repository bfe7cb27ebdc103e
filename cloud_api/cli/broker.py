"""kedge-cloud-api broker init: make this machine's mosquitto ready for kedge (TLS, one
identity per board, no anonymous access). Runs here, not through the service."""

from __future__ import annotations

import argparse
import ipaddress
from pathlib import Path

from cloud_api.broker.setup import BrokerSetup
from cloud_api.cli.common import EXIT_FAILED, EXIT_OK, dump, print_json
from cloud_api.settings import CloudSettings
from kedge.errors import CommandError, UserError
from kedge.host import Host
from kedge.names import HOSTNAME_RE

DESCRIPTION = """Configure the local mosquitto (Debian's package) for kedge: a TLS listener whose
certificate comes from a CA this API owns (boards get the CA at enrollment and pin it),
mosquitto's dynamic security plugin with identities only this API holds, no anonymous
access, and limits that never drop an acknowledged report. From then on every enrolled
board gets its own broker identity that may use only its own topics.

Run it again at any time: what is right is kept; a certificate missing a --board-host
name, or near its end, is made again. It restarts nothing unless --restart is given."""

EPILOG = """example:
  kedge-cloud-api broker init --board-host 192.168.1.10 --restart
"""


def host_name(value: str) -> str:
    try:
        return ipaddress.ip_address(value).compressed
    except ValueError:
        pass
    if not HOSTNAME_RE.fullmatch(value) or len(value) > 253:
        raise argparse.ArgumentTypeError(f"{value!r}: expected a DNS name or an IP address")
    return value.lower()


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser],
             common: argparse.ArgumentParser, client: argparse.ArgumentParser) -> None:  # fmt: skip
    verbs = sub.add_parser("broker", help="the MQTT broker boards report to").add_subparsers(
        dest="broker_command", metavar="COMMAND", required=True
    )
    init = verbs.add_parser(
        "init", parents=[common], help="configure the local mosquitto for kedge (TLS, per-board identities)",
        description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    init.add_argument("--board-host", type=host_name, action="append", required=True, metavar="HOST",
                      help="the address boards reach the broker at (repeat for more names; the "
                           "first is the one boards are told)")  # fmt: skip
    init.add_argument("--port", type=int, default=8883, help="the TLS listener's port (8883)")
    init.add_argument("--listen-address", type=host_name, metavar="ADDR",
                      help="bind the TLS listener to this address only (default: all)")  # fmt: skip
    init.add_argument("--loopback-port", type=int, metavar="PORT",
                      help="also a plain listener on 127.0.0.1:PORT (same identities, no TLS)")  # fmt: skip
    init.add_argument("--restart", action="store_true",
                      help="restart mosquitto and kedge-cloud-api if what changed needs it")  # fmt: skip
    init.add_argument("--conf-dir", type=Path, default=Path("/etc/mosquitto/conf.d"), metavar="DIR",
                      help="where mosquitto reads extra settings (%(default)s)")  # fmt: skip
    init.add_argument("--cert-dir", type=Path, default=Path("/etc/mosquitto/kedge"), metavar="DIR",
                      help="where the broker's certificate and key go (%(default)s)")  # fmt: skip
    init.add_argument("--dynsec-file", type=Path, metavar="FILE",
                      default=Path("/var/lib/mosquitto/kedge-dynamic-security.json"),
                      help="the dynamic security plugin's file (%(default)s)")  # fmt: skip
    init.add_argument("--owner", default="mosquitto", metavar="USER",
                      help="the user mosquitto runs as (%(default)s)")  # fmt: skip
    init.add_argument("--state-dir", type=Path, metavar="DIR",
                      help="the cloud API's state directory, where the CA key, the API's broker "
                           "passwords and the record go (default: the service's, state_dir)")  # fmt: skip
    init.add_argument("--json", action="store_true", help="print what was done as JSON")
    init.set_defaults(handler=run_init, overrides=lambda a: {"state_dir": a.state_dir})


async def run_init(args: argparse.Namespace, settings: CloudSettings) -> int:
    for port in (args.port, args.loopback_port):
        if port is not None and not 1 <= port <= 65535:
            raise UserError(f"port {port}: expected 1-65535")
    setup = BrokerSetup(
        state_dir=settings.state_dir, board_hosts=args.board_host, port=args.port,
        listen_address=args.listen_address, loopback_port=args.loopback_port,
        conf_dir=args.conf_dir, cert_dir=args.cert_dir, dynsec_file=args.dynsec_file,
        owner=args.owner, topic_prefix=settings.mqtt.topic_prefix,
    )  # fmt: skip
    host = Host(Path("/"))
    changes = await setup.run(host)
    restarts = setup.restarts()
    restarted: list[str] = []
    if args.restart:
        for service in restarts:
            verb = "restart" if service == "mosquitto" else "try-restart"
            try:
                result = await host.run(["systemctl", verb, service], timeout=120)
            except CommandError as exc:
                print(f"kedge-cloud-api: error: cannot restart {service}: {exc}")
                return EXIT_FAILED
            if not result.ok:
                print(
                    f"kedge-cloud-api: error: systemctl {verb} {service}: {result.stderr.strip()}"
                )
                return EXIT_FAILED
            restarted.append(service)
    if args.json:
        print_json(dump({"changes": [c.model_dump() for c in changes], "restart": restarts,
                         "restarted": restarted}))  # fmt: skip
        return EXIT_OK
    for c in changes:
        print(f"{'wrote' if c.action == 'write' else 'kept '} {c.target}: {c.detail}")
    for service in restarts:
        if service in restarted:
            print(f"restarted {service}")
        else:
            print(f"{service} reads these at start: restart it (systemctl restart {service})")
    if not restarts:
        print("nothing changed: no restart needed")
    return EXIT_OK
