"""Fresh credentials for an enrolled board without an enrollment secret: the board
proves itself with its current command key (POST /api/v1/renew) and gets a join token
current now and a new key. `kedge-agent enroll --renew` asks for it, and `kedge-agent
join` does by itself when the token from enrollment has expired."""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import ValidationError

from agent import __version__
from agent.enrollment import Enrollment
from kedge import command_auth
from kedge.cloud_client import ApiClient, ClientError
from kedge.wire import RenewRequest

RENEW_BEFORE_S = 600  # a token this close to its end is renewed before a join


def due(known: Enrollment | None, now: float) -> bool:
    """An enrollment whose join token ends within RENEW_BEFORE_S, and that can renew."""
    return (
        known is not None
        and known.command_key is not None
        and known.token_expires_at is not None
        and known.token_expires_at < now + RENEW_BEFORE_S
    )


async def renewed(known: Enrollment, *, ca_file: Path | None = None) -> Enrollment:
    """The cloud API's fresh answer for `known` (ApiAnswerError when it refuses,
    ClientError when it cannot be reached or answers nonsense)."""
    assert known.command_key is not None
    at = int(time.time())
    made = command_auth.proof(known.node_name, at, known.command_key.get_secret_value())
    body = RenewRequest(
        node_name=known.node_name, agent_version=__version__, proof_at=at, proof=made
    )
    async with ApiClient(known.cloud_api_url, timeout=30, ca_file=ca_file) as api:
        _, answer = await api.call("POST", "/api/v1/renew", body.model_dump(mode="json"))
    try:
        return Enrollment.model_validate(
            {
                **(answer if isinstance(answer, dict) else {}),
                "cloud_api_url": known.cloud_api_url,
                "enrolled_at": time.time(),
            }
        )
    except ValidationError as exc:
        raise ClientError(
            f"{known.cloud_api_url} answered something that is not an enrollment "
            f"({exc.error_count()} problems): is it kedge-cloud-api?"
        ) from None


async def forget_node(known: Enrollment, *, ca_file: Path | None = None) -> bool:
    """Ask the cloud API to delete this board's own Node (proven with its key); whether
    there was one. ClientError when it cannot be reached or refuses."""
    assert known.command_key is not None
    at = int(time.time())
    made = command_auth.proof(known.node_name, at, known.command_key.get_secret_value(),
                              command_auth.FORGET_NODE_DOMAIN)  # fmt: skip
    body = RenewRequest(
        node_name=known.node_name, agent_version=__version__, proof_at=at, proof=made
    )
    async with ApiClient(known.cloud_api_url, timeout=30, ca_file=ca_file) as api:
        _, answer = await api.call("POST", "/api/v1/forget-node", body.model_dump(mode="json"))
    return bool(isinstance(answer, dict) and answer.get("deleted"))
