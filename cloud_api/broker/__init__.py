"""The broker kedge's boards report to: its set-up (`kedge-cloud-api broker init`) and
the per-board identities the cloud API keeps in it (mosquitto's dynamic security)."""
