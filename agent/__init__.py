"""kedge-agent: preflight, repair, join and health reporting for KubeEdge edge boards."""

from kedge.version import __version__

__all__ = ["__version__"]
