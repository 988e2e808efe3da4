"""The `riverrun` command line: one module per command group."""
