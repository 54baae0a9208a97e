"""``python -m ferryman``."""

from __future__ import annotations

import sys

from ferryman.cli.main import main

sys.exit(main())
