"""Flag parsing the way keadm's cobra/pflag does it, errors worded the same."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any


class CobraError(Exception):
    pass


def fail(msg: str) -> int:
    """A command's error, as keadm shows it: cobra prints "Error: <err>" on stderr, then
    keadm's main (keadm/cmd/keadm/keadm.go@v1.13.0) fmt.Println("execute keadm command
    failed: ", err) on stdout."""
    sys.stderr.write(f"Error: {msg}\n")
    sys.stdout.write(f"execute keadm command failed:  {msg}\n")
    sys.stdout.flush()
    return 1


@dataclass(frozen=True)
class Flag:
    name: str
    short: str | None = None
    default: Any = ""
    kind: str = "string"  # "string" | "bool" | "stringArray"


def parse(specs: list[Flag], argv: list[str]) -> dict[str, Any]:
    by_name = {f.name: f for f in specs}
    by_short = {f.short: f for f in specs if f.short}
    values: dict[str, Any] = {f.name: ([] if f.kind == "stringArray" else f.default) for f in specs}
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg in ("-h", "--help"):
            values["help"] = True
            continue
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            flag = by_name.get(name)
            if flag is None:
                raise CobraError(f"unknown flag: --{name}")
            shown = f"--{name}"
        elif arg.startswith("-") and len(arg) > 1:
            flag = by_short.get(arg[1])
            if flag is None:
                raise CobraError(f"unknown shorthand flag: '{arg[1]}' in {arg}")
            rest = arg[2:]
            eq, value = (
                ("=", rest[1:]) if rest.startswith("=") else (("=", rest) if rest else ("", ""))
            )
            shown = f"-{arg[1]}"
        else:
            raise CobraError(f'unknown command "{arg}" for "keadm"')
        if flag.kind == "bool":
            if not eq:
                values[flag.name] = True
            elif value in ("true", "false", "1", "0", "t", "f", "TRUE", "FALSE"):
                values[flag.name] = value in ("true", "1", "t", "TRUE")
            else:
                raise CobraError(
                    f'invalid argument "{value}" for "{shown}" flag: strconv.ParseBool: parsing "{value}": invalid syntax'
                )
            continue
        if not eq:
            if i >= len(argv):
                raise CobraError(f"flag needs an argument: {shown}")
            value = argv[i]
            i += 1
        if flag.kind == "stringArray":
            values[flag.name].append(value)
        else:
            values[flag.name] = value
    return values
