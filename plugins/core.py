"""``core.*``: ping, client options, method discovery, event subscriptions (API.md §7)."""

from __future__ import annotations

from typing import Any

from middlewared_2fa.api import CallContext, Service, api_method
from middlewared_2fa.errors import NotAuthorized
from middlewared_2fa.roles import has_any
from middlewared_2fa.schema.common import BoolResult, NullResult
from middlewared_2fa.schema.core import (
    CoreGetMethodsArgs,
    CoreGetMethodsResult,
    CorePingArgs,
    CorePingResult,
    CoreSetOptionsArgs,
    CoreSubscribeArgs,
    CoreSubscribeResult,
    CoreUnsubscribeArgs,
)


class CoreService(Service):
    class Config:
        namespace = "core"

    @api_method(CorePingArgs, CorePingResult, auth="none")
    async def ping(self, ctx: CallContext) -> str:
        """Liveness check; returns ``"pong"``."""
        return "pong"

    @api_method(CoreSetOptionsArgs, NullResult, auth="none", rate_limit="exempt")
    async def set_options(self, ctx: CallContext, options: dict[str, Any]) -> None:
        """Accept and ignore TrueNAS client options (``legacy_jobs``, ``py_exceptions``...)."""
        return None

    @api_method(CoreGetMethodsArgs, CoreGetMethodsResult, auth="none")
    async def get_methods(self, ctx: CallContext) -> dict[str, dict[str, Any]]:
        """Methods this session may call: ``{name: {description, accepts, returns, roles,
        authentication_required}}`` with JSON Schemas of the parameters and result (a
        setup-only session's calls only, API.md §4)."""
        session = ctx.session
        out: dict[str, dict[str, Any]] = {}
        for name, method in sorted(self.middleware.methods.items()):
            spec = method.spec
            if spec.private:
                continue
            if spec.auth == "required" and (
                not session.authenticated
                or not has_any(session.granted, spec.roles)
                or (session.setup_only and not spec.setup)
            ):
                continue
            out[name] = {
                "description": spec.description,
                "accepts": spec.accepts.model_json_schema(),
                "returns": spec.returns.model_json_schema(),
                "roles": list(spec.roles),
                "authentication_required": spec.auth == "required",
            }
        return out

    @api_method(CoreSubscribeArgs, CoreSubscribeResult, roles=[], setup=True)
    async def subscribe(self, ctx: CallContext, event: str) -> str:
        """Subscribe to ``collection_update`` notifications of ``event``.

        Raises:
            ValidationErrors: unknown event (attribute ``event``).
            CallError: EACCES when the session lacks the collection's read role.
        """
        if ctx.connection is None:
            raise NotAuthorized()
        return self.middleware.events.subscribe(ctx.connection, event)

    @api_method(CoreUnsubscribeArgs, BoolResult, roles=[], setup=True)
    async def unsubscribe(self, ctx: CallContext, id: str) -> bool:
        """Cancel a subscription of this connection; False when ``id`` is not one."""
        if ctx.connection is None:
            return False
        return self.middleware.events.unsubscribe(ctx.connection, id)
