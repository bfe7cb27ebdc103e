"""kedge-cloud-api's command line (the service itself arrives with its own issue)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from cloud_api import __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kedge-cloud-api",
        description="Drive cloudcore setup on the master and enroll edge boards "
        "(not implemented yet: only --version and --help work).",
    )
    parser.add_argument("--version", action="version", version=f"kedge-cloud-api {__version__}")
    parser.parse_args(argv)
    parser.print_help()
    return 2
