"""liqwatch's daemon: config, feeds, engine, input consumer, CLI."""
