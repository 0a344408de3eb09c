"""``python -m bench``: run the benchmarks (:mod:`bench.main`), or
``python -m bench profile TARGET`` (:mod:`bench.profile`)."""

from __future__ import annotations

import sys


def _run() -> int:
    if sys.argv[1:2] == ["profile"]:
        from bench.profile import main as profile

        return profile(sys.argv[2:])
    from bench.main import main

    return main()


raise SystemExit(_run())
