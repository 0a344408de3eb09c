"""Test helpers: daemons (in-process and subprocess), clients, assets, RFC fixtures."""
