"""``python -m clinical ...``: see :mod:`clinical.cli`."""

from .cli import main

raise SystemExit(main())
