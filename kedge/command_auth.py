"""Commands authenticated end to end: the cloud API seals every command with an
HMAC-SHA256 under a key it made for that one board at enrollment; the board verifies
before it looks at anything else the command says.

The broker only carries commands: whoever holds a broker account (a leaked cloud-side
password, a board's own, a misconfigured ACL) can publish to a board's command topic,
but without the board's key cannot make it run anything. A MAC rather than a signature:
the board side stays standard library (no crypto library in the arm64 package), and a
key shared by one board and the API gives away nothing but that board, which whoever
holds its key already has.

What is sealed: the id, the board's node name (a command for one board is worthless on
another), the action, the arguments (canonical JSON), both times (as integer
microseconds, so that no re-serialisation of a timestamp changes the bytes) and the
per-board sequence. The sequence is what stops a replay: the board keeps the last one it
accepted under this key (agent/spool.py) and takes only a higher one, however wrong its
clock — a board that boots with its clock behind would otherwise accept a command
captured long ago whose expiry it believes is still ahead.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from datetime import UTC, datetime, timedelta

from kedge.wire import RemoteCommand

KEY_BYTES = 32
DOMAIN = b"kedge-command-v1\x00"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def key_id(key: str) -> str:
    """A short name for a key that gives nothing of it away: the board's sequence is kept
    per key, so a board enrolled again (a new key) starts a new sequence."""
    return hashlib.sha256(b"kedge-key-id\x00" + key.strip().encode()).hexdigest()[:16]


def new_key() -> str:
    """A fresh board key, as text (URL-safe base64 of 32 random bytes)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def check_key(key: str) -> None:
    """ValueError when `key` is not a command key."""
    _key_bytes(key)


def _key_bytes(key: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(key.strip().encode())
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != KEY_BYTES:
        raise ValueError(f"a command key is {KEY_BYTES} bytes in URL-safe base64")
    return raw


def _micros(t: datetime) -> int:
    return (t - _EPOCH) // timedelta(microseconds=1)


def sealed_bytes(command: RemoteCommand, node: str) -> bytes:
    fields = {
        "id": command.id,
        "node": node,
        "action": command.action,
        "args": command.args,
        "issued_at": _micros(command.issued_at),
        "expires_at": _micros(command.expires_at),
    }
    if command.seq is not None:
        fields["seq"] = command.seq
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return DOMAIN + canonical.encode()


def seal(command: RemoteCommand, node: str, key: str) -> RemoteCommand:
    """The command with its MAC for `node` under `key`."""
    mac = hmac.new(_key_bytes(key), sealed_bytes(command, node), hashlib.sha256).hexdigest()
    return command.model_copy(update={"mac": mac})


def refusal(command: RemoteCommand, node: str, key: str | None) -> str | None:
    """Why `command` must not run on `node` holding `key`, or None when it is sealed right."""
    if key is None:
        return (
            "this board holds no command key, so it runs no remote command: enroll it with "
            "the cloud API (kedge-agent enroll), which gives it one"
        )
    if command.mac is None:
        return "unsigned: commands must carry the cloud API's MAC for this board"
    if command.seq is None:
        return (
            "no sequence: commands must carry the cloud API's sequence for this board "
            "(a cloud API older than this board: upgrade it)"
        )
    try:
        raw = _key_bytes(key)
    except ValueError as exc:
        return f"this board's command key is unusable ({exc}): enroll the board again"
    expected = hmac.new(raw, sealed_bytes(command, node), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, command.mac):
        return "bad MAC: not sealed by this board's cloud API, or altered on the way"
    return None


# The same key proves a board's identity when it enrolls again: a name belongs to the
# board that holds its key. Another domain string, so that no command MAC can ever be
# passed off as a proof or the other way round.
PROOF_DOMAIN = b"kedge-enroll-v1\x00"
PROOF_WINDOW_S = 300


# What else a board proves its key for: its own Node deleted before a re-join (v1.20 on
# refuses a name the cluster still has). A different domain, so that a renewal's proof
# cannot be replayed to delete the Node, nor the other way round.
FORGET_NODE_DOMAIN = b"kedge-forget-node-v1\x00"


def proof(node: str, at: int, key: str, domain: bytes = PROOF_DOMAIN) -> str:
    """The board's proof that it holds `key`, for enrolling `node` again at `at` (epoch s)."""
    return hmac.new(
        _key_bytes(key), domain + f"{node}\x00{at}".encode(), hashlib.sha256
    ).hexdigest()


def proof_refusal(node: str, at: int | None, given: str | None, key: str, now: float,
                  domain: bytes = PROOF_DOMAIN) -> str | None:  # fmt: skip
    """Why an enrollment's proof does not show the board holds `key`, or None."""
    if given is None or at is None:
        return "no proof of the board's key"
    if abs(now - at) > PROOF_WINDOW_S:
        return f"the proof was made {int(now - at)} s from the cloud API's time (allowed: {PROOF_WINDOW_S} s)"
    if not hmac.compare_digest(proof(node, at, key, domain), given):
        return "the proof was not made with this name's key"
    return None
