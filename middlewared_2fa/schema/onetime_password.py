"""``auth.generate_onetime_password`` models (API.md §10)."""

from __future__ import annotations

from pydantic import Field

from middlewared_2fa.schema.common import Model


class OnetimePasswordRequest(Model):
    username: str = Field(max_length=256, description="the user who lost their authenticator")


class AuthGenerateOnetimePasswordArgs(Model):
    data: OnetimePasswordRequest
