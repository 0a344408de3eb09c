"""Authorization table: every role against every method that reads or changes the system
or another user. The expected table is written here from API.md, independently of the code."""

from __future__ import annotations

from typing import Any

import pytest

from middlewared_2fa.cli.client import Client, ClientError
from tests.helpers.daemon import InProcessDaemon
from tests.helpers.rfc import RFC_SECRET

READONLY = {"READONLY_ADMIN"}
#: method -> roles that allow it (FULL_ADMIN always does). API.md §3-§7.
ALLOWED: dict[str, set[str]] = {
    "auth.twofactor.config": {"SYSTEM_SECURITY_READ", "SYSTEM_SECURITY_WRITE"} | READONLY,
    "auth.twofactor.update": {"SYSTEM_SECURITY_WRITE"},
    "audit.query": {"SYSTEM_AUDIT_READ"} | READONLY,
    "alert.list": {"SYSTEM_SECURITY_READ", "SYSTEM_SECURITY_WRITE"} | READONLY,
    "user.get_instance": {"ACCOUNT_READ", "ACCOUNT_WRITE"} | READONLY,
    "user.create": {"ACCOUNT_WRITE"},
    "user.update": {"ACCOUNT_WRITE"},
    "user.delete": {"ACCOUNT_WRITE"},
    "user.unset_2fa_secret": {"ACCOUNT_WRITE"},
    "user.renew_2fa_secret": set(),
    "user.provisioning_uri": set(),
    "user.twofactor_config": set(),
    "user.twofactor_qr": set(),
    "user.verify_twofactor_token": set(),
    "user.twofactor_enroll": set(),
    "user.twofactor_confirm": set(),
    "user.twofactor_recovery_codes": set(),
    "user.webauthn_list": set(),
    "user.webauthn_delete": set(),
    "auth.generate_onetime_password": {"ACCOUNT_WRITE"},
    "system.ntpserver.query": {"SYSTEM_SECURITY_READ", "SYSTEM_SECURITY_WRITE"} | READONLY,
    "system.ntpserver.create": {"SYSTEM_SECURITY_WRITE"},
    "system.ntpserver.update": {"SYSTEM_SECURITY_WRITE"},
    "system.ntpserver.delete": {"SYSTEM_SECURITY_WRITE"},
    "system.time_sync.check": {"SYSTEM_SECURITY_WRITE"},
}
#: Allowed calls that still fail on the state they find: confirming with a wrong code is
#: -32602 (EINVAL), which is not a denial.
#: Deleting a passkey the victim does not have is ENOENT.
REFUSED_ON_STATE = {"user.twofactor_confirm": "EINVAL", "user.webauthn_delete": "ENOENT"}
#: Methods open to every session (or before login): they act on the caller's own
#: session, or read what every user may see (API.md §3, §6, §7, §9). Their own rules
#: (own sessions only, own entry only) have tests of their own.
OPEN = {
    # API keys: anyone manages their own; others' need API_KEY_* within the role guard
    # (tests/api/test_api_keys.py::test_keys_of_others_need_the_role_and_the_guard).
    "api_key.convert_raw_key",
    "api_key.create",
    "api_key.delete",
    "api_key.my_keys",
    "api_key.query",
    "api_key.update",
    "auth.generate_token",
    "auth.login",
    "auth.login_with_api_key",
    "auth.login_ex",
    "auth.login_ex_continue",
    "auth.logout",
    "auth.me",
    "auth.mechanism_choices",
    "auth.last_code_refusal",
    "auth.sessions",
    "auth.terminate_other_sessions",
    "auth.terminate_session",
    "core.get_methods",
    "core.ping",
    "core.set_options",
    "core.subscribe",
    "core.unsubscribe",
    "system.time_sync.status",
    "user.query",
    # Passkey registration: only for the caller's own account, FULL_ADMIN included (the
    # browser makes the key pair; tests/api/test_webauthn.py checks the EPERM).
    "user.webauthn_register_begin",
    "user.webauthn_register_finish",
}
ROLES = [
    None,
    "ACCOUNT_READ",
    "ACCOUNT_WRITE",
    "SYSTEM_SECURITY_READ",
    "SYSTEM_SECURITY_WRITE",
    "SYSTEM_AUDIT_READ",
    "AUTH_SESSIONS_READ",
    "AUTH_SESSIONS_WRITE",
    "API_KEY_READ",
    "API_KEY_WRITE",
    "READONLY_ADMIN",
    "FULL_ADMIN",
]


def calls(victim: dict[str, Any], spare: dict[str, Any], ntp: int) -> dict[str, list[Any]]:
    name = victim["username"]
    return {
        "system.ntpserver.query": [],
        "system.ntpserver.create": [{"address": "127.0.0.1", "port": 12399}],
        "system.ntpserver.update": [ntp, {"port": 12398}],
        "system.ntpserver.delete": [ntp],
        "system.time_sync.check": [],
        "auth.twofactor.config": [],
        "auth.twofactor.update": [{"window": 1}],
        "audit.query": [],
        "alert.list": [],
        "user.get_instance": [victim["id"]],
        "user.create": [{"username": "made_by_role", "password": "pw"}],
        "user.update": [victim["id"], {"full_name": "changed"}],
        "user.delete": [spare["id"]],
        "user.unset_2fa_secret": [name],
        "user.renew_2fa_secret": [name],
        "user.provisioning_uri": [name],
        "user.twofactor_config": [name],
        "user.twofactor_qr": [name],
        "user.verify_twofactor_token": [name, "000000"],
        "user.twofactor_enroll": [name],
        "user.twofactor_confirm": [name, "000000"],
        "user.twofactor_recovery_codes": [name],
        "user.webauthn_list": [name],
        "user.webauthn_delete": [name, 1],
        "auth.generate_onetime_password": [{"username": name}],
    }


async def login(daemon: InProcessDaemon, username: str) -> Client:
    ctx = daemon.client()
    c = await ctx.__aenter__()
    c._ctx = ctx  # type: ignore[attr-defined]
    assert (await c.login(username, "pw-" + username))["response_type"] == "SUCCESS"
    return c


def role_names(schema: Any) -> set[str]:
    """The names that the ``roles`` arrays anywhere in a JSON Schema accept."""
    found: set[str] = set()
    if isinstance(schema, dict):
        roles = schema.get("properties", {}).get("roles")
        if isinstance(roles, dict) and "enum" in roles.get("items", {}):
            found |= set(roles["items"]["enum"])
        for value in schema.values():
            found |= role_names(value)
    elif isinstance(schema, list):
        for value in schema:
            found |= role_names(value)
    return found


async def test_every_method_is_in_the_table(daemon: InProcessDaemon) -> None:
    """The table is exactly the registry: a new method without a role-table entry (or a
    place among the methods open to every session) fails here, and so does an entry
    that is never called below or a role that is never tried."""
    async with daemon.root() as root:
        methods = await root.call("core.get_methods")
    registered = set(methods)
    assert registered == set(ALLOWED) | OPEN, {
        "not in the table": sorted(registered - set(ALLOWED) - OPEN),
        "not registered": sorted((set(ALLOWED) | OPEN) - registered),
    }
    assert not set(ALLOWED) & OPEN
    assert set(calls({"username": "v", "id": 1}, {"id": 2}, 3)) == set(ALLOWED)
    # Open methods are not exercised below: their declaration must not ask for a role.
    assert {name: methods[name]["roles"] for name in OPEN} == {name: [] for name in OPEN}
    assert set(ROLES) - {None} == role_names(methods["user.create"]["accepts"])


# No NTP server answers in this test: the clock check gives up quickly.
@pytest.mark.settings(ntp_timeout=0.2)
@pytest.mark.parametrize("role", ROLES)
async def test_role_table(daemon: InProcessDaemon, role: str | None) -> None:
    """Each role may call exactly the methods the contract gives it, on another user."""
    async with daemon.admin() as admin:
        caller = await admin.call(
            "user.create",
            {"username": "caller", "password": "pw-caller", "roles": [role] if role else []},
        )
        victim = await admin.call("user.create", {"username": "victim", "password": "pw-v"})
        spare = await admin.call("user.create", {"username": "spare", "password": "pw-s"})
        await daemon.seed_secret("victim", RFC_SECRET)
        ntp = await admin.call("system.ntpserver.create", {"address": "127.0.0.1", "port": 12397})
        c = await login(daemon, "caller")
        try:
            for method, params in calls(victim, spare, ntp["id"]).items():
                allowed = role == "FULL_ADMIN" or role in ALLOWED[method]
                try:
                    await c.call(method, *params)
                    outcome = "ok"
                except ClientError as exc:
                    outcome = str(exc.errname)
                # Denied means EACCES/EPERM; get_instance of an invisible user is ENOENT, so
                # that its existence is not revealed either.
                denials = {"EACCES", "EPERM"} | (
                    {"ENOENT"} if method == "user.get_instance" else set()
                )
                assert (outcome in denials) is (not allowed), (role, method, outcome)
                succeeded = outcome in ("ok", REFUSED_ON_STATE.get(method))
                assert allowed is succeeded, (role, method, outcome)
                if method == "user.unset_2fa_secret":
                    await daemon.seed_secret("victim", RFC_SECRET)
            visible = {u["username"] for u in await c.call("user.query")}
            reads = role in {"ACCOUNT_READ", "ACCOUNT_WRITE", "READONLY_ADMIN", "FULL_ADMIN"}
            assert ("victim" in visible) is reads
            assert "caller" in visible
        finally:
            await c._ctx.__aexit__(None, None, None)  # type: ignore[attr-defined]
        if role not in ("FULL_ADMIN", "SYSTEM_SECURITY_WRITE"):
            assert (await admin.call("auth.twofactor.config"))["window"] == 0
        assert caller["roles"] == ([role] if role else [])
