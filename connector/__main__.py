"""``python -m connector`` is ``cxone-connector``."""

import sys

from connector.cli import main

sys.exit(main())
