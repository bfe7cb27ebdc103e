"""clock: the board's time against NTP, the cloud API and cloudcore's certificate.

A board clock behind the time cloudcore made its certificate gives edgecore's
"x509: certificate has expired or is not yet valid", which looks like a token problem.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from agent.checks.context import CheckContext
from agent.checks.facts import ClockFacts
from agent.checks.registry import Outcome, check, failed, passed, warned
from agent.x509 import validity
from kedge.errors import ProbeError
from kedge.names import ntp_server, split_hostport
from kedge.probes import SntpSample, http_date_offset, sntp_query, tls_peer_certificate

STEP_REMEDY = (
    "Set the clock from NTP: chronyc makestep, or ntpdate -u <server>, or "
    "timedatectl set-ntp true and wait for sync. Boards without a battery-backed RTC "
    "start in the past after every power cut: keep an NTP client enabled."
)


async def _ntp_samples(ctx: CheckContext) -> tuple[list[SntpSample], list[str]]:
    targets = [ntp_server(s) for s in ctx.settings.ntp_servers]
    results = await asyncio.gather(
        *(sntp_query(h, p, timeout=2.0) for h, p in targets), return_exceptions=True
    )
    samples, errors = [], []
    for r in results:
        if isinstance(r, SntpSample):
            samples.append(r)
        elif isinstance(r, ProbeError):
            errors.append(str(r))
        elif isinstance(r, BaseException):
            raise r
    return samples, errors


async def _cloud_api_offset(ctx: CheckContext) -> tuple[float | None, str | None]:
    if not ctx.settings.cloud_api_url:
        return None, None
    try:
        return await http_date_offset(ctx.settings.cloud_api_url, timeout=3.0), None
    except ProbeError as exc:
        return None, str(exc)


async def _cert_not_before(ctx: CheckContext) -> tuple[datetime | None, str | None]:
    if not ctx.settings.cloudcore:
        return None, None
    host, _ = split_hostport(ctx.settings.cloudcore)
    try:
        der = await tls_peer_certificate(host, ctx.settings.cloudcore_cert_port, timeout=3.0)
        return validity(der).not_before, None
    except (ProbeError, ValueError) as exc:
        return None, str(exc)


@check(
    "clock",
    "Board clock",
    "The clock agrees with NTP (and the cloud API), and is not before cloudcore's certificate.",
)
async def clock(ctx: CheckContext) -> Outcome:
    s = ctx.settings
    (samples, ntp_errors), (api_offset, api_error), (not_before, cert_error) = await asyncio.gather(
        _ntp_samples(ctx), _cloud_api_offset(ctx), _cert_not_before(ctx)
    )
    now = ctx.host.now()
    details: dict[str, object] = {
        "ntp": [
            {"server": x.server, "offset_s": round(x.offset_s, 3), "delay_s": round(x.delay_s, 3)}
            for x in samples
        ],
        "ntp_errors": ntp_errors,
        "warn_s": s.clock_warn_s,
        "fail_s": s.clock_fail_s,
    }
    if api_offset is not None:
        details["cloud_api_offset_s"] = round(api_offset, 3)
    if api_error:
        details["cloud_api_error"] = api_error
    if cert_error:
        details["cloudcore_cert_error"] = cert_error

    if not_before is not None:
        details["cloudcore_cert_not_before"] = not_before.isoformat()
        if not_before.timestamp() > now:
            ctx.facts.clock = ClockFacts(None, None, cert_not_before=not_before)
            board = datetime.fromtimestamp(now, UTC)
            return failed(
                f"board clock {board:%Y-%m-%d %H:%M:%S}Z is before cloudcore's certificate "
                f"(valid from {not_before:%Y-%m-%d %H:%M:%S}Z): edgecore will fail with "
                '"x509: certificate has expired or is not yet valid"',
                STEP_REMEDY,
                **details,
            )

    offsets: list[tuple[str, float]] = []
    if samples:
        best = min(samples, key=lambda x: x.delay_s)
        offsets.append((f"NTP {best.server}", best.offset_s))
    if api_offset is not None:
        offsets.append(("cloud API", api_offset))
    if not offsets:
        sources = ", ".join(s.ntp_servers) or "none configured"
        return warned(
            f"no time source answered (NTP: {sources})",
            "Allow UDP 123 to the NTP servers, or set ntp_servers to a server the board can "
            'reach (a local one works offline: ntp_servers = ["10.0.0.1"]).',
            **details,
        )
    source, offset = max(offsets, key=lambda o: abs(o[1]))
    details["offset_s"] = round(offset, 3)
    details["source"] = source
    ctx.facts.clock = ClockFacts(offset, source, cert_not_before=None)
    direction = "behind" if offset > 0 else "ahead of"
    measured = f"{abs(offset):.1f} s {direction} {source}"
    if abs(offset) < 0.05:
        measured = f"in step with {source} ({offset * 1000:+.0f} ms)"
    if abs(offset) >= s.clock_fail_s:
        return failed(f"clock is {measured} (limit {s.clock_fail_s:g} s)", STEP_REMEDY, **details)
    if abs(offset) >= s.clock_warn_s:
        return warned(
            f"clock is {measured} (warning at {s.clock_warn_s:g} s)", STEP_REMEDY, **details
        )
    return passed(f"clock is {measured}", **details)
