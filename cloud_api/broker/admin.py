"""The cloud API's hand on the broker's identities: commands to mosquitto's dynamic
security plugin over `$CONTROL/dynamic-security/v1`, each batch answered on its
response topic and matched by correlation data.

A connection per batch: enrollments are rare, and a link held open would need its own
reconnecting and would keep the admin identity on the broker for no use.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import replace
from typing import Any

import aiomqtt
import structlog
from pydantic import SecretStr

from cloud_api.broker import identities
from kedge import mqtt
from kedge.broker import BrokerSettings

log = structlog.get_logger(__name__)

ANSWER_TIMEOUT_S = 10.0


class BrokerAdminError(Exception):
    """The broker could not be reached, or refused an identity change (the message says
    which command and why)."""


class BrokerAdmin:
    def __init__(self, settings: BrokerSettings, username: str, password: str, *,
                 topic_prefix: str, discovery_prefix: str) -> None:  # fmt: skip
        self.endpoint = mqtt.endpoint(settings, identifier="", key="mqtt")
        self.username, self._password = username, password
        self.topic_prefix, self.discovery_prefix = topic_prefix, discovery_prefix
        self._lock = asyncio.Lock()  # one identity change at a time: each batch converges

    async def put_board(self, node: str) -> str:
        """Create or replace `node`'s identity with a new password (returned): the old
        one stops working and its connection is dropped."""
        password = identities.new_password()
        await self.run(identities.board_commands(node, password, self.topic_prefix,
                                                 self.discovery_prefix))  # fmt: skip
        log.info("broker.board_identity", node=node, username=identities.board_username(node))
        return password

    async def remove_board(self, node: str) -> None:
        """The board's identity deleted (its connection dropped), then every retained
        message it left cleared: a removed board must not come back as a row in the
        fleet view or a device in Home Assistant after the next restart."""
        await self.run(
            identities.removal_commands(node)
            + identities.clearing_commands(self.topic_prefix, self.discovery_prefix)
        )
        topics = identities.retained_topics(node, self.topic_prefix, self.discovery_prefix)
        await self._clear(topics)
        log.info("broker.board_removed", node=node, retained_cleared=len(topics))

    async def _clear(self, topics: list[str]) -> None:
        ep = replace(self.endpoint, identifier=f"kedge_admin-{secrets.token_hex(8)}",
                     username=self.username, password=SecretStr(self._password))  # fmt: skip
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                async with mqtt.client(ep) as client:
                    for topic in topics:
                        await client.publish(topic, b"", qos=1, retain=True)
        except TimeoutError:
            raise BrokerAdminError(
                f"the broker at {ep.address} did not take the clearing of retained messages "
                f"within {ANSWER_TIMEOUT_S:g} s"
            ) from None
        except aiomqtt.MqttError as exc:
            raise BrokerAdminError(
                f"cannot clear retained messages on the broker at {ep.address}: "
                f"{mqtt.classify(exc)}"
            ) from exc

    async def run(self, commands: list[dict[str, Any]]) -> None:
        async with self._lock:
            answers = await self._exchange(commands)
        for sent, answer in zip(commands, answers, strict=True):
            error = answer.get("error")
            if error and (sent["command"], error) not in identities.HARMLESS:
                raise BrokerAdminError(f"the broker refused {sent['command']}: {error}")

    async def _exchange(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        tag = secrets.token_hex(8)
        sent = [{**c, "correlationData": f"{tag}-{i}"} for i, c in enumerate(commands)]
        # A client id no board can hold (board ids are kedge-<DNS name>, without '_').
        ep = replace(self.endpoint, identifier=f"kedge_admin-{tag}", username=self.username,
                     password=SecretStr(self._password))  # fmt: skip
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                async with mqtt.client(ep) as client:
                    await client.subscribe(f"{identities.CONTROL}/response", qos=1)
                    await client.publish(identities.CONTROL, json.dumps({"commands": sent}), qos=1)
                    return await _answers(client, tag, len(sent))
        except TimeoutError:
            raise BrokerAdminError(
                f"the broker at {ep.address} did not answer the identity change within "
                f"{ANSWER_TIMEOUT_S:g} s (is its dynamic security plugin loaded? "
                "kedge-cloud-api broker init)"
            ) from None
        except aiomqtt.MqttError as exc:
            raise BrokerAdminError(
                f"cannot change identities on the broker at {ep.address}: {mqtt.classify(exc)}"
            ) from exc


async def _answers(client: aiomqtt.Client, tag: str, count: int) -> list[dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    async for message in client.messages:
        try:
            responses = json.loads(bytes(message.payload))["responses"]
        except (ValueError, KeyError, TypeError):
            continue
        for r in responses if isinstance(responses, list) else []:
            corr = r.get("correlationData") if isinstance(r, dict) else None
            if isinstance(corr, str) and corr.startswith(tag + "-"):
                found[corr] = r
        if len(found) == count:
            break
    return [found[f"{tag}-{i}"] for i in range(count)]
