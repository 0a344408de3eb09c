"""``python -m middlewared_2fa``: the same as the ``middlewared-2fa`` command."""

from __future__ import annotations

from middlewared_2fa.main import main

raise SystemExit(main())
