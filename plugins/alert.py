"""``alert.*``: one-shot alerts raised by other services, and the ``alert.list`` event."""

from __future__ import annotations

import uuid
from typing import Any

from middlewared_2fa.api import CallContext, Service, api_method
from middlewared_2fa.middleware import Middleware
from middlewared_2fa.schema.audit import AlertListArgs, AlertListResult


class AlertService(Service):
    """Holds the current alerts in memory; services raise and clear them by class and key."""

    class Config:
        namespace = "alert"

    def __init__(self, middleware: Middleware) -> None:
        super().__init__(middleware)
        self._alerts: dict[tuple[str, str], dict[str, Any]] = {}

    async def setup(self) -> None:
        self.middleware.events.declare("alert.list", ["SYSTEM_SECURITY_READ"])

    @api_method(AlertListArgs, AlertListResult, roles=["SYSTEM_SECURITY_READ"])
    async def list(self, ctx: CallContext) -> list[dict[str, Any]]:
        """Current alerts: ``[{uuid, klass, level, formatted, datetime}]``, oldest first."""
        return sorted(self._alerts.values(), key=lambda a: a["datetime"])

    def raise_alert(self, klass: str, level: str, formatted: str, key: str = "") -> None:
        """Raise (or update the text of) alert ``klass``/``key``; emits ``alert.list``."""
        existing = self._alerts.get((klass, key))
        if existing is not None:
            if existing["formatted"] == formatted and existing["level"] == level:
                return
            existing.update(level=level, formatted=formatted)
            self.middleware.events.emit("alert.list", "changed", existing["uuid"], dict(existing))
            return
        alert = {
            "uuid": str(uuid.uuid4()),
            "klass": klass,
            "level": level,
            "formatted": formatted,
            "datetime": self.middleware.clock.time(),
        }
        self._alerts[(klass, key)] = alert
        self.middleware.events.emit("alert.list", "added", alert["uuid"], dict(alert))

    def clear_alert(self, klass: str, key: str | None = "") -> None:
        """Clear alert ``klass``/``key`` (every key of the class when ``key`` is None)."""
        for k in [k for k in self._alerts if k[0] == klass and (key is None or k[1] == key)]:
            alert = self._alerts.pop(k)
            self.middleware.events.emit("alert.list", "removed", alert["uuid"], dict(alert))
