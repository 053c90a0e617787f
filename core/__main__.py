"""``python -m kdforge`` runs the command line."""

from __future__ import annotations

import sys

from kdforge.cli import main

sys.exit(main())
