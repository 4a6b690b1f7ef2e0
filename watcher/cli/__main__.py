"""``python -m watcher.cli``: the same as the ``liqwatch`` console script."""

import sys

from watcher.cli.main import main

sys.exit(main())
