"""The version of kedge, from the installed distribution's metadata (pyproject.toml is
the one place it is written; the Debian package ships the dist-info)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def _installed() -> str:
    try:
        return version("kedge")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


__version__ = _installed()
