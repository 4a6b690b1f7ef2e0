"""The ``liqwatch`` command line: every command, the operator views and their rendering."""
