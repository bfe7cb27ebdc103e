"""kedge-cloud-api: drives cloudcore setup, enrolls boards and serves the fleet view."""

from kedge.version import __version__

__all__ = ["__version__"]
