"""The daemon: config, logging, the engine, the input consumer, and the app that runs them."""
