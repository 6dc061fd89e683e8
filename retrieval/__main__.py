"""``python -m retrieval``: see :mod:`retrieval.cli`."""

import sys

from retrieval.cli import main

sys.exit(main())
