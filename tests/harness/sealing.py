"""Commands as the cloud API sends them: sealed with the board's key (kedge.command_auth).
Test boards are configured with TEST_COMMAND_KEY (see tests/conftest.py ready_settings)."""

from __future__ import annotations

import base64
import itertools
import json
import time
from typing import Any

from kedge import command_auth
from kedge.wire import RemoteCommand

TEST_COMMAND_KEY = base64.urlsafe_b64encode(bytes(range(32))).decode()
# As the cloud API's: increasing, and above anything a board of an earlier test run kept.
_SEQUENCE = itertools.count(int(time.time() * 1000))


def next_seq() -> int:
    return next(_SEQUENCE)


def sealed(body: dict[str, Any], node: str = "board-1", key: str = TEST_COMMAND_KEY) -> str:
    """The JSON of `body` (a valid command) with its MAC for `node`, and the next sequence
    unless the body has one."""
    body = {"seq": next_seq(), **body}
    command = command_auth.seal(RemoteCommand.model_validate(body, extra="forbid"), node, key)
    return json.dumps(command.model_dump(mode="json", exclude_none=True))
