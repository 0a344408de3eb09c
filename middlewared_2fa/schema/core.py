"""``core.*`` models (API.md §7)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from middlewared_2fa.schema.common import Model, Out


class CorePingArgs(Model):
    """No parameters."""


class CorePingResult(Out):
    result: str = Field(description='always "pong"')


class CoreSetOptionsArgs(Model):
    options: dict[str, Any] = Field(
        default_factory=dict, description="TrueNAS client options (accepted and ignored)"
    )


class CoreGetMethodsArgs(Model):
    """No parameters."""


class CoreGetMethodsResult(Out):
    result: dict[str, dict[str, Any]] = Field(
        description="name -> {description, accepts, returns, roles, authentication_required}"
    )


class CoreSubscribeArgs(Model):
    event: str = Field(max_length=128, description="event name, e.g. user.query")


class CoreSubscribeResult(Out):
    result: str = Field(description="subscription id for core.unsubscribe")


class CoreUnsubscribeArgs(Model):
    id: str = Field(max_length=64, description="id returned by core.subscribe")
