"""One module per kedge-agent subcommand: its arguments and its handler."""
