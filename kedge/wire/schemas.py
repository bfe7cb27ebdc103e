"""JSON Schemas of the wire payloads, as committed under docs/schemas/.

python -m kedge.wire.schemas docs/schemas     # regenerate after changing a model
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from kedge.wire import SCHEMAS

BASE_ID = "https://kedge.example.org/schemas/"


def render(name: str) -> str:
    """The schema of one payload as kedge writes it (mode="serialization": what a
    consumer receives; reading ignores unknown keys, which the schema allows)."""
    schema = SCHEMAS[name].model_json_schema(by_alias=True, mode="serialization")
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              "$id": f"{BASE_ID}{name}.schema.json", **schema}  # fmt: skip
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in SCHEMAS:
        path = directory / f"{name}.schema.json"
        path.write_text(render(name), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/schemas")):
        print(p)
