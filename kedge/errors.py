"""The few exception types kedge raises; lower layers are mapped to these at the seam.

KedgeError
├── UserError            the user's input is wrong; the CLI exits 2 with the message
│   └── ConfigError      a setting: names the file or variable, the key and the fix
└── HostError            something on the board did not answer as expected
    ├── CommandError     a command is missing, failed to start or timed out
    ├── DockerError      the Docker Engine API answered with an error
    │   └── DockerUnavailable   nothing answers on the socket
    └── ProbeError       a network probe (SNTP, TCP, TLS, HTTP) failed
"""

from __future__ import annotations

from pydantic import ValidationError


class KedgeError(Exception):
    """Base of every error kedge raises on purpose."""


class UserError(KedgeError):
    """Bad input from the user: reported in one line, exit status 2."""


class ConfigError(UserError):
    """A setting is wrong; the message names where it came from and the expected form."""


class HostError(KedgeError):
    """The board (files, processes, sockets) could not be read or driven."""


class CommandError(HostError):
    """A command could not be run to completion."""


class DockerError(HostError):
    """The Docker Engine API returned an error."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class DockerUnavailable(DockerError):
    """Nothing answers on the Docker socket."""


class ProbeError(HostError):
    """A network probe failed (unreachable, refused, timed out, bad answer)."""


def first_problem(exc: ValidationError, whole: str) -> str:
    """`key.path: message` for the first error pydantic found in a document (`whole`
    names the document when the error is about all of it)."""
    e = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in e["loc"]) or whole
    return f"{where}: {e['msg'].removeprefix('Value error, ')}"
