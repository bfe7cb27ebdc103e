"""kedge-cloud-api: drives cloudcore setup, enrolls boards and serves the fleet view."""

__version__ = "0.1.0"
