"""middlewared_2fa: the two-factor authentication part of a NAS middleware.

An asyncio daemon that serves JSON-RPC 2.0 over WebSocket (``/api/current``), in the
style of TrueNAS ``middlewared``. The framework lives in this package; the business
logic lives in the service plugins under the top-level ``plugins/`` folder.
"""

from __future__ import annotations

__version__ = "0.1.0"
