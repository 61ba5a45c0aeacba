"""``python -m zen_websocket``: the ``zen-websocket`` command (see :mod:`zen_websocket.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
