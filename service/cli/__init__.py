"""The `lifecycle` command and its subcommands."""
