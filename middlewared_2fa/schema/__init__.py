"""Pydantic models of the wire contract, one module per namespace (API.md)."""
