"""What every payload shares: forward-compatible reading, one JSON form, secrets that
travel but never print, and the rules every value read off the wire obeys.

Those rules live here, once, for every model (`Payload._wire_values`): a board or a
client can send any JSON, and one value that a reader cannot handle (a time without a
zone, `Infinity`, a list nested a thousand deep) must fail validation where it arrives,
not crash whatever later does arithmetic with it or writes it out again as JSON."""

from __future__ import annotations

import math
import typing
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    WithJsonSchema,
    model_validator,
)

SCHEMA_VERSION: Literal[1] = 1
# Free-form parts of a payload (a check's details, a command's args and result) are JSON
# of any shape; deeper than this is not something kedge writes.
MAX_DEPTH = 16

# A secret on the wire: its value goes into the JSON a program sends, never into a repr,
# a log line or model_dump() for humans.
WireSecret = Annotated[
    SecretStr,
    PlainSerializer(lambda s: s.get_secret_value(), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "description": "a secret: sent in the clear, never logged"}),
]


def check_value(value: Any, where: str = "", depth: int = 0) -> None:
    """ValueError naming the first value no reader can rely on: a float that is not
    finite, a time without a zone or beyond what UTC can hold, nesting past MAX_DEPTH.
    Nested payloads have checked themselves and are not walked again."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where or 'value'}: {value!r} is not a finite number")
    elif isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"{where or 'time'}: {value.isoformat()} has no time zone "
                "(send it with one, for example ...Z or +08:00)"
            )
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise ValueError(f"{where or 'time'}: {value.isoformat()} is out of range") from None
    elif isinstance(value, BaseModel):
        return
    elif isinstance(value, dict | list | tuple):
        if depth >= MAX_DEPTH:
            raise ValueError(f"{where or 'value'}: nested deeper than {MAX_DEPTH} levels")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            check_value(item, f"{where}.{key}" if where else str(key), depth + 1)


def _may_hold_unchecked(hint: Any) -> bool:
    """Whether a field of this type can hold a value pydantic's own validation lets
    through and check_value would refuse: a datetime (naive, or beyond UTC), or anything
    untyped (Any: non-finite numbers, deep nesting)."""
    if hint in (Any, object, datetime, AwareDatetime):
        return True
    return any(_may_hold_unchecked(arg) for arg in typing.get_args(hint))


class Payload(BaseModel):
    """A payload one program writes and another reads. Unknown keys are ignored when
    reading, so a newer board never breaks an older cloud; what kedge itself writes is
    built from these models and checked with `extra="forbid"` in the tests."""

    # allow_inf_nan=False refuses NaN and ±Infinity in every typed float (and says so in
    # the JSON Schema); _wire_values covers the untyped parts and the times.
    model_config = ConfigDict(extra="ignore", populate_by_name=True, allow_inf_nan=False)
    # Documents people read too (the CLI's --json) are indented; messages are compact.
    json_indent: ClassVar[int | None] = None

    # The fields _wire_values walks: those that can hold a time or free-form JSON (typed
    # floats are pydantic's, in its core; a field of nested payloads checks itself).
    _wire_checked: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._wire_checked = tuple(
            name for name, info in cls.model_fields.items() if _may_hold_unchecked(info.annotation)
        )

    @model_validator(mode="after")
    def _wire_values(self) -> Any:
        for name in self._wire_checked:
            check_value(getattr(self, name), name)
        return self

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=self.json_indent)


class Versioned(Payload):
    """A JSON document that says which version of its shape it is."""

    schema_: Literal[1] = Field(SCHEMA_VERSION, alias="schema")
