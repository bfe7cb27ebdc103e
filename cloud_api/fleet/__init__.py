"""The fleet view: MQTT ingest, its store, Kubernetes readiness, commands to boards."""
