"""Commands: one module per command group of ``pubsub``; each parses its options, calls
the library and hands the result to ``pubsub_cli.output``."""
