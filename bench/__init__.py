"""Benchmarks of the middlewared-2fa daemon (``scripts/bench``); see bench/README.md."""

from __future__ import annotations
