"""``python -m connector`` is ``cxone-connector``."""

import sys

from connector.cli import main

# Guarded: decode workers are spawned processes, which import the main module again.
if __name__ == "__main__":
    sys.exit(main())
