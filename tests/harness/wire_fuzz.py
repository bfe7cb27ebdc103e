"""Hypothesis strategies for the board → cloud payloads, generated from the kedge.wire
models themselves (their field annotations: a new field is fuzzed without a change
here), and mutations of them as a hostile board would send: wrong types, extreme and
non-finite numbers, times without a zone or out of range, huge strings, deep nesting,
unusual Unicode, retained and repeated deliveries.

`fuzz_ingest` feeds them through a real broker into a real `kedge-cloud-api serve`
(tests/cloud/test_wire_fuzz.py runs a few hundred; bench/fuzz_ingest.py ten thousand)."""

from __future__ import annotations

import json
import types
import typing
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from typing import Any

from hypothesis import strategies as st
from pydantic import BaseModel

from kedge.wire import CheckReport, CommandResult, FirstBootProgress, HealthReport

# The topics a board reports on, and what each carries (cloud_api.fleet.ingest.MODELS).
LEAVES: dict[str, type[BaseModel]] = {
    "health": HealthReport,
    "checks": CheckReport,
    "cmd/result": CommandResult,
    "firstboot": FirstBootProgress,
}
JSON_LEAF = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=16)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
AWARE = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


def for_type(hint: Any, node: str) -> st.SearchStrategy[Any]:
    """Valid JSON-ready values for a field's type hint."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        return for_type(args[0], node)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(for_type(a, node) for a in args))
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin is list:
        return st.lists(for_type(args[0], node), max_size=3)
    if origin is tuple:
        return st.tuples(*(for_type(a, node) for a in args))
    if origin is dict:
        return st.dictionaries(
            st.text(min_size=1, max_size=12), for_type(args[1], node), max_size=3
        )
    if hint is type(None):
        return st.none()
    if isinstance(hint, type) and issubclass(hint, Enum):
        return st.sampled_from([m.value for m in hint])
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        return model_dicts(hint, node)
    if hint is datetime:
        return AWARE.map(lambda d: d.isoformat())
    if hint is bool:
        return st.booleans()
    if hint is int:
        return st.integers(1, 10**6)
    if hint is float:
        return st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
    if hint is str:
        return st.text(max_size=40)
    return JSON


def model_dicts(model: type[BaseModel], node: str) -> st.SearchStrategy[dict[str, Any]]:
    """A valid payload of `model` as a dict (its own `node` where it has one)."""
    hints = typing.get_type_hints(model, include_extras=True)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for name, info in model.model_fields.items():
        key = info.alias or name
        if name == "node":
            fields[key] = st.just(node)
        elif name == "schema_":
            fields[key] = st.just(1)
        else:
            fields[key] = for_type(hints[name], node)
    return st.fixed_dictionaries(fields)


HOSTILE_VALUES = st.one_of(
    st.sampled_from([float("inf"), float("-inf"), float("nan"), 1e308, -1e308, 2**63, -(2**64)]),
    st.sampled_from(
        [
            "0001-01-01T00:00:00",
            "9999-12-31T23:59:59-14:00",
            "2026-13-45T25:61:00Z",
            "9999-12-31T23:59:59",
            "0001-01-01T00:00:00+01:00",
            "not a time",
            "",
        ]
    ),
    st.datetimes(timezones=st.none()).map(lambda d: d.isoformat()),  # naive
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-14))])).map(
        lambda d: d.isoformat()
    ),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=64),  # unusual Unicode
    st.just("\u202e\u0000\ud7ff\U0010ffff" * 8),
    st.integers(1000, 40000).map(lambda n: "x" * n),  # huge strings (the broker takes 64 KiB)
    st.integers(50, 400).map(lambda n: json.loads("[" * n + "]" * n)),  # deep nesting
    JSON,
    st.booleans(),
    st.none(),
)


@st.composite
def mutated(draw: st.DrawFn, valid: dict[str, Any]) -> dict[str, Any]:
    """`valid` with one value somewhere in it replaced by a hostile one (or a key dropped,
    or one added)."""
    body: dict[str, Any] = json.loads(json.dumps(valid))
    paths: list[list[Any]] = []

    def walk(value: Any, path: list[Any]) -> None:
        paths.append(path)
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, [*path, k])
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, [*path, i])

    walk(body, [])
    path = draw(st.sampled_from(paths[1:] or [[]]))
    action = draw(st.sampled_from(["replace", "replace", "replace", "drop", "add"]))
    if not path:
        return body
    parent: Any = body
    for key in path[:-1]:
        parent = parent[key]
    if action == "drop" and isinstance(parent, dict):
        del parent[path[-1]]
    elif action == "add" and isinstance(parent, dict):
        parent[draw(st.text(max_size=12))] = draw(HOSTILE_VALUES)
    else:
        parent[path[-1]] = draw(HOSTILE_VALUES)
    return body


@st.composite
def deliveries(draw: st.DrawFn, node: str) -> tuple[str, bytes, bool, int]:
    """(leaf, payload, retain, times): a valid or mutated payload, as a board might send
    it, retained or not, once or again."""
    leaf = draw(st.sampled_from(sorted(LEAVES)))
    valid = draw(model_dicts(LEAVES[leaf], node))
    body = draw(st.one_of(st.just(valid), mutated(valid)))
    if draw(st.integers(0, 9)) == 0:
        raw = draw(
            st.sampled_from([b"", b"{", b"null", b"[]", b'"x"', b"\xff\xfe", b"{}" * 20_000])
        )
    else:
        raw = json.dumps(body).encode()  # NaN and Infinity as the JavaScript tokens
    return leaf, raw, draw(st.booleans()), draw(st.sampled_from([1, 1, 1, 2]))


def strict_answers(api_url: str, token: str, node: str) -> list[str]:
    """Every read route about `node` and the fleet, read as a strict JSON reader reads
    it; the paths read (an AssertionError names the first that is not strict JSON)."""
    from tests.harness.http import get_text, strict_loads

    paths = ["/api/v1/nodes", f"/api/v1/nodes/{node}", f"/api/v1/nodes/{node}/health",
             "/api/v1/nodes?status=online", "/api/v1/boards/pending", "/readyz"]  # fmt: skip
    for path in paths:
        status, text = get_text(api_url + path, token)
        assert status in (200, 404), f"{path}: {status} {text[:200]}"
        try:
            strict_loads(text)
        except ValueError as exc:
            raise AssertionError(f"{path} is not strict JSON: {exc}: {text[:200]}") from None
    status, text = get_text(api_url + "/metrics", token)
    assert status == 200
    values = [line.rsplit(" ", 1)[-1] for line in text.splitlines() if not line.startswith("#")]
    assert not [v for v in values if v.lower() in ("inf", "+inf", "-inf", "nan")], "/metrics"
    return paths


BROKER_LIMIT = 65536 - 512  # message_size_limit, less the PUBLISH packet's own bytes


def fuzz_ingest(
    api_url: str, token: str, fuzzer: Any, examples: int, check_every: int = 100
) -> int:
    """Publish `examples` deliveries as the board `fuzzer` (tests/harness/fleet.Board),
    reading every API answer strictly every `check_every` messages; how many went out."""
    from hypothesis import HealthCheck, given, settings

    sent = [0]

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(deliveries(fuzzer.node))
    def deliver(case: tuple[str, bytes, bool, int]) -> None:
        leaf, raw, retain, times = case
        if len(raw) > BROKER_LIMIT:
            # The broker drops it and the board with it (message_size_limit): what that
            # leaves is tests/cloud/test_broker_budgets.py's; nothing of it reaches the API.
            return
        for _ in range(times):
            fuzzer.publish_raw(f"kedge/{fuzzer.node}/{leaf}", raw, retain=retain)
            sent[0] += 1
            if sent[0] % check_every == 0:
                strict_answers(api_url, token, fuzzer.node)

    deliver()
    return sent[0]
