"""kedge's shared foundation: what both programs (the board's `agent`, the master's
`cloud_api`) stand on. It imports neither of them (docs/architecture.md)."""
