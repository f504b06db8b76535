"""``python -m sdcourse`` runs the command line, like the ``sdcourse`` script."""

import sys

from .cli import main

sys.exit(main())
