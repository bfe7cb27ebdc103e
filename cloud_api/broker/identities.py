"""Who may do what on the broker, as mosquitto's dynamic security plugin spells it.

Three kinds of identity (docs/security.md): the admin (changes identities, nothing
else), the cloud API's fleet client (reads every board's reports, the only publisher of
commands) and one client per board (its own topics only, one client id). Board user
names carry a prefix no other identity has, so no node name can ever name, replace or
delete the cloud's own identities.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any

from kedge.wire.discovery import discovery_topics

ADMIN_USERNAME = "kedge-admin"
CLOUD_USERNAME = "kedge-cloud"
ADMIN_ROLE = "kedge-admin"
CLOUD_ROLE = "kedge-cloud"
RETAINED_LEAVES = ("status", "firstboot")  # a board's retained topics besides discovery
BOARD_PREFIX = "board-"
CONTROL = "$CONTROL/dynamic-security/v1"
# What mosquitto 2.0's own dynsec hashing uses (src/password_mosq.h: SALT_LEN 12,
# PW_DEFAULT_ITERATIONS 101; plugins/dynamic-security/auth.c: PBKDF2 with SHA-512, 64
# bytes). The passwords are 256 random bits, so the iteration count is not what guards them.
_SALT_BYTES, _ITERATIONS, _HASH_BYTES = 12, 101, 64

# mosquitto's own choice for `dynsec init`: publishing and subscribing are denied unless a
# role allows them; receiving what one may subscribe to, and unsubscribing, are allowed.
DEFAULT_ACCESS = {"publishClientSend": False, "publishClientReceive": True,
                  "subscribe": False, "unsubscribe": True}  # fmt: skip


def new_password() -> str:
    return secrets.token_urlsafe(32)


def board_username(node: str) -> str:
    return BOARD_PREFIX + node


def board_client_id(node: str) -> str:
    """The one client id a board's identity may connect with (the agent's choice)."""
    return f"kedge-{node}"


def board_role_name(node: str) -> str:
    return BOARD_PREFIX + node


def _acl(acltype: str, topic: str) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "allow": True, "priority": 0}


def board_acls(node: str, prefix: str, discovery_prefix: str) -> list[dict[str, Any]]:
    """Publish only its own reports (its Last Will is its status) and its own Home
    Assistant discovery (the topics of kedge.wire.discovery.ENTITIES, each by name);
    subscribe only to its own commands and Home Assistant's birth."""
    own = f"{prefix}/{node}"
    return [
        *(_acl("publishClientSend", f"{own}/{leaf}")
          for leaf in ("status", "health", "checks", "cmd/result", "firstboot")),
        # Literal topics: what the agent announces, nothing of the board's choosing.
        *(_acl("publishClientSend", t) for t in discovery_topics(discovery_prefix, node)),
        _acl("subscribeLiteral", f"{own}/cmd"),
        _acl("subscribeLiteral", f"{discovery_prefix}/status"),
    ]  # fmt: skip


def cloud_acls(prefix: str) -> list[dict[str, Any]]:
    return [
        _acl("subscribePattern", f"{prefix}/#"),
        _acl("subscribePattern", f"$share/+/{prefix}/#"),  # fleet.share_group
        _acl("publishClientSend", f"{prefix}/+/cmd"),
    ]


def admin_acls(prefix: str, discovery_prefix: str) -> list[dict[str, Any]]:
    # $CONTROL topics are never reachable by default access (the plugin's acl.c): the
    # answers must be allowed to arrive, not only be subscribed to.
    return [
        _acl("publishClientSend", CONTROL),
        _acl("subscribeLiteral", f"{CONTROL}/response"),
        _acl("publishClientReceive", f"{CONTROL}/response"),
        *clearing_acls(prefix, discovery_prefix),
    ]


def clearing_acls(prefix: str, discovery_prefix: str) -> list[dict[str, Any]]:
    """What the admin identity may publish besides $CONTROL: the empty retained messages
    that clear a removed board's topics (it already controls every identity, so this
    gives it nothing more)."""
    return [_acl("publishClientSend", f"{prefix}/+/{leaf}") for leaf in RETAINED_LEAVES] + [
        _acl("publishClientSend", f"{discovery_prefix}/+/+/+/config")
    ]


def retained_topics(node: str, prefix: str, discovery_prefix: str) -> list[str]:
    """Every topic a board leaves a retained message on: cleared when it is removed."""
    return [f"{prefix}/{node}/{leaf}" for leaf in RETAINED_LEAVES] + discovery_topics(
        discovery_prefix, node
    )


def clearing_commands(prefix: str, discovery_prefix: str) -> list[dict[str, Any]]:
    """The admin role's clearing ACLs, for a broker set up before it had them."""
    return [
        {"command": "addRoleACL", "rolename": ADMIN_ROLE, **acl}
        for acl in clearing_acls(prefix, discovery_prefix)
    ]


def board_commands(
    node: str, password: str, prefix: str, discovery_prefix: str
) -> list[dict[str, Any]]:
    """Create (or replace) a board's identity: deleting first makes it converge whatever
    was there, and the delete drops a connection made with the old password."""
    user, role = board_username(node), board_role_name(node)
    return [
        {"command": "deleteClient", "username": user},
        {"command": "deleteRole", "rolename": role},
        {"command": "createRole", "rolename": role, "textname": f"kedge board {node}",
         "acls": board_acls(node, prefix, discovery_prefix)},
        {"command": "createClient", "username": user, "password": password,
         "clientid": board_client_id(node), "textname": f"kedge board {node}",
         "roles": [{"rolename": role, "priority": 0}]},
    ]  # fmt: skip


def removal_commands(node: str) -> list[dict[str, Any]]:
    return [
        {"command": "deleteClient", "username": board_username(node)},
        {"command": "deleteRole", "rolename": board_role_name(node)},
    ]


# Answers that mean "already as wanted" for a command that converges.
HARMLESS = {
    ("deleteClient", "Client not found"),
    ("deleteRole", "Role not found"),
    ("addRoleACL", "ACL with this topic already exists"),
}


def hashed(password: str) -> dict[str, Any]:
    """The fields of a dynsec client that let `password` in."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _ITERATIONS, _HASH_BYTES)
    return {"salt": base64.b64encode(salt).decode(), "password": base64.b64encode(digest).decode(),
            "iterations": _ITERATIONS}  # fmt: skip


def initial_config(
    admin_password: str, cloud_password: str, prefix: str, discovery_prefix: str = "homeassistant"
) -> dict[str, Any]:
    """The plugin's first file: the admin and the cloud API's fleet client, no board yet."""
    return {
        "defaultACLAccess": DEFAULT_ACCESS,
        "clients": [
            {"username": ADMIN_USERNAME, "textname": "kedge cloud API: identities",
             "roles": [{"rolename": ADMIN_ROLE}], **hashed(admin_password)},
            {"username": CLOUD_USERNAME, "textname": "kedge cloud API: reports and commands",
             "roles": [{"rolename": CLOUD_ROLE}], **hashed(cloud_password)},
        ],
        "groups": [],
        "roles": [
            {"rolename": ADMIN_ROLE, "acls": admin_acls(prefix, discovery_prefix)},
            {"rolename": CLOUD_ROLE, "acls": cloud_acls(prefix)},
        ],
    }  # fmt: skip
