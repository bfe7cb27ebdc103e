"""kedge-agent: preflight, repair, join and health reporting for KubeEdge edge boards."""

__version__ = "0.1.0"
