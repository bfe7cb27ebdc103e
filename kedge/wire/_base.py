"""What every payload shares: forward-compatible reading, one JSON form, secrets that
travel but never print."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, SecretStr, WithJsonSchema

SCHEMA_VERSION: Literal[1] = 1

# A secret on the wire: its value goes into the JSON a program sends, never into a repr,
# a log line or model_dump() for humans.
WireSecret = Annotated[
    SecretStr,
    PlainSerializer(lambda s: s.get_secret_value(), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "description": "a secret: sent in the clear, never logged"}),
]


class Payload(BaseModel):
    """A payload one program writes and another reads. Unknown keys are ignored when
    reading, so a newer board never breaks an older cloud; what kedge itself writes is
    built from these models and checked with `extra="forbid"` in the tests."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    # Documents people read too (the CLI's --json) are indented; messages are compact.
    json_indent: ClassVar[int | None] = None

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=self.json_indent)


class Versioned(Payload):
    """A JSON document that says which version of its shape it is."""

    schema_: Literal[1] = Field(SCHEMA_VERSION, alias="schema")
