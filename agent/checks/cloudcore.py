"""cloudcore: reachable from the board, serving a certificate valid for its address,
and matching the join token (caught here instead of after keadm's 300 s wait)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.checks.context import CheckContext
from agent.checks.registry import Outcome, check, failed, passed, warned
from agent.x509 import sha256_hex, to_der
from kedge.errors import ProbeError, UserError
from kedge.kubeedge import Release
from kedge.names import split_hostport
from kedge.probes import https_get_unverified, https_status_unverified, tcp_connect, tls_verify
from kedge.token import parse_token

TOKEN_WARN_LEFT = timedelta(hours=1)
NAT_REMEDY = (
    "The board must reach cloudcore at this address, TCP {ws} (websocket) and {cert} "
    "(certificates). Check the address is the master's IP on the boards' network and that "
    "a firewall allows both ports. A master in a VM behind NAT (VMware/VirtualBox 'NAT' "
    "mode) can reach out but cannot be reached: give the VM a bridged network adapter and "
    "run keadm init --advertise-address=<bridged IP>."
)
FRESH_CREDENTIALS_ADVICE = (
    "Get a fresh token on the master with `keadm gettoken` and set token (or token_file); "
    "make sure cloudcore is the cloudcore that issued it."
)


@check(
    "cloudcore",
    "cloudcore reachable, certificate and token",
    "cloudcore's ports 10000/10002 answer, its certificate fits its address, the token fits its CA.",
)
async def cloudcore(ctx: CheckContext) -> Outcome:
    s = ctx.settings
    if not s.cloudcore:
        return warned(
            "cloudcore is not set, so it cannot be checked",
            'Set cloudcore = "<master IP>:10000" in /etc/kedge/agent.toml '
            "(or KEDGE_AGENT_CLOUDCORE).",
        )
    host, ws_port = split_hostport(s.cloudcore)
    cert_port = s.cloudcore_cert_port
    details: dict[str, Any] = {"host": host, "websocket_port": ws_port, "cert_port": cert_port}
    remedy = NAT_REMEDY.format(ws=ws_port, cert=cert_port)
    reach = await asyncio.gather(
        tcp_connect(host, ws_port, timeout=3.0),
        tcp_connect(host, cert_port, timeout=3.0),
        return_exceptions=True,
    )
    errors = [str(r) for r in reach if isinstance(r, ProbeError)]
    for r in reach:
        if isinstance(r, BaseException) and not isinstance(r, ProbeError):
            raise r
    if errors:
        return failed(f"cannot reach cloudcore: {'; '.join(errors)}", remedy, **details)
    details["connect_ms"] = [round(float(r), 1) for r in reach if isinstance(r, float)]

    base = f"https://{s.cloudcore.rsplit(':', 1)[0]}:{cert_port}"
    try:
        ca_der = to_der(await https_get_unverified(f"{base}/ca.crt", timeout=3.0))
    except (ProbeError, ValueError) as exc:
        return failed(f"no CA certificate from {base}/ca.crt: {exc}", remedy, **details)
    ca_hash = sha256_hex(ca_der)
    details["ca_sha256"] = ca_hash
    try:
        await tls_verify(host, cert_port, ca_der, timeout=3.0)
    except ProbeError as exc:
        return failed(
            f"edgecore would reject cloudcore's certificate: {exc}",
            "If it says 'not yet valid' or 'expired', fix the board clock (see the clock check). "
            f"If it says the name or IP does not match, {host} is not in cloudcore's "
            "advertise addresses: use an address it lists, or re-run keadm init with "
            f"--advertise-address including {host}.",
            **details,
        )
    taken = await _name_taken(ctx, base, details)
    return taken or _token_outcome(ctx, ca_hash, details)


async def _name_taken(ctx: CheckContext, base: str, details: dict[str, Any]) -> Outcome | None:
    """From v1.20 keadm join asks cloudcore GET /node/<name> first and refuses unless 404
    (keadm/cmd/keadm/app/cmd/edge/join.go isNodeExist): say so before it does."""
    if not Release(ctx.settings.kubeedge_version).checks_node_exists or ctx.joined() is not None:
        return None
    node = ctx.node_name()
    try:
        status = await https_status_unverified(f"{base}/node/{node}", timeout=3.0)
    except ProbeError as exc:
        return failed(f"cannot ask cloudcore whether {node} is registered: {exc}",
                      "keadm join asks the same and would stop: see why the port does not answer.",
                      **details)  # fmt: skip
    details["node_lookup_status"] = status
    if status == 404:
        return None
    return failed(
        f"cloudcore answers HTTP {status} for node {node}: keadm join {ctx.settings.kubeedge_version} "
        'would refuse with "node already exists or internal error occurred, cannot register again"',
        f"If this board is that node coming back, delete its Node first: kedge-cloud-api remove {node} "
        f"(or kubectl delete node {node}); if another board holds the name, set node_name to "
        "another. HTTP 500: cloudcore could not ask the API server (kubectl -n kubeedge logs cloudcore).",
        **details,
    )


def _token_outcome(ctx: CheckContext, ca_hash: str, details: dict[str, Any]) -> Outcome:
    reachable = f"cloudcore {ctx.settings.cloudcore} reachable, TLS verified"
    if ctx.joined() is not None:  # the token was spent on the join; edgecore has its certificate
        return passed(f"{reachable}; joined, the join token is not needed again", **details)
    try:
        token = ctx.token()
    except UserError as exc:
        return failed(
            f"{reachable}; {exc}",
            "Point token_file at a readable file holding the token.",
            **details,
        )
    if token is None:
        return warned(
            f"{reachable}; no join token configured",
            "Set token or token_file (from `keadm gettoken` on the master) before joining.",
            **details,
        )
    try:
        parsed = parse_token(token)
    except ValueError as exc:
        return failed(f"{reachable}; {exc}", FRESH_CREDENTIALS_ADVICE, **details)
    if parsed.ca_hash != ca_hash:
        return failed(
            f"{reachable}; the token is for another cloudcore: token CA hash "
            f"{parsed.ca_hash[:12]}…, this cloudcore's CA hash {ca_hash[:12]}…",
            FRESH_CREDENTIALS_ADVICE,
            **details,
        )
    if parsed.expires_at is None:
        return passed(f"{reachable}; token matches its CA", **details)
    details["token_expires_at"] = parsed.expires_at.isoformat()
    left = parsed.expires_at - datetime.fromtimestamp(ctx.host.now(), UTC)
    if left <= timedelta(0):
        return failed(
            f"{reachable}; the token expired at {parsed.expires_at:%Y-%m-%d %H:%M}Z",
            FRESH_CREDENTIALS_ADVICE,
            **details,
        )
    if left < TOKEN_WARN_LEFT:
        return warned(
            f"{reachable}; the token expires in {int(left.total_seconds() // 60)} min",
            FRESH_CREDENTIALS_ADVICE,
            **details,
        )
    return passed(
        f"{reachable}; token matches its CA, valid until {parsed.expires_at:%Y-%m-%d %H:%M}Z",
        **details,
    )
