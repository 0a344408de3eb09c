"""SSH two-factor (API.md §5, §8): the OATH users file and PAM snippet the daemon keeps for
pam_oath, the ssh_password_enabled rule, and bug cases C22 and C19 (OATH file part).

These tests read the files; tests/e2e/test_pam_oath.py runs the real pam_oath on them.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from middlewared_2fa.cli.client import Client, ClientError
from tests.helpers.assets import user_asset
from tests.helpers.daemon import InProcessDaemon, wait_until
from tests.helpers.oath import (
    enable_ssh_2fa,
    hex_of,
    line_of,
    pam_oath_lines,
    secret_of,
    users_lines,
)

#: pam_oath's replay state as liboath appends it: COUNTER, LAST OTP, TIME.
PAM_STATE = ["0", "123456", "2026-01-02T03:04:05L"]
#: A legacy secret of 26 base32 characters (bug case C15): not a multiple of 8.
LEGACY_SECRET = "S46SQCPPTCNPROMHWYBDCTBZXV"
ALERT = "SshOathWriteFailed"


def mode_of(path: os.PathLike[str]) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def exists(path: str) -> bool:
    return Path(path).exists()


async def invalid_params(client: Client, method: str, *params: object) -> list[list[object]]:
    """``data.extra`` of the -32602 error ``method`` must answer with."""
    with pytest.raises(ClientError) as info:
        await client.call(method, *params)
    assert info.value.code == -32602, info.value.data
    return info.value.extra


async def test_files_are_inert_while_ssh_2fa_is_off(daemon: InProcessDaemon) -> None:
    """Until global 2FA and services.ssh are both on, the snippet has no pam_oath line and
    the users file (mode 0600) lists nobody, whatever secrets exist."""
    settings = daemon.ssh
    async with daemon.admin() as admin:
        await admin.call("user.renew_2fa_secret", "admin", {})
        assert pam_oath_lines(settings.pam_snippet_path) == []
        assert users_lines(settings.oath_users_path) == []
        assert mode_of(settings.oath_users_path) == 0o600
        await admin.call("auth.twofactor.update", {"services": {"ssh": True}})
        assert users_lines(settings.oath_users_path) == []
        await admin.call("auth.twofactor.update", {"enabled": True, "services": {"ssh": False}})
        assert users_lines(settings.oath_users_path) == []
        assert pam_oath_lines(settings.pam_snippet_path) == []
        await admin.call("auth.twofactor.update", {"services": {"ssh": True}})
        assert [f[1] for f in users_lines(settings.oath_users_path)] == ["admin"]


async def test_users_file_and_snippet_formats(daemon: InProcessDaemon) -> None:
    """Each user with a secret is one line HOTP/T{interval}/{digits}, name, '-', hex secret
    (a legacy 26-character secret included); the snippet names the absolute users file
    path and the window; the users file is mode 0600."""
    settings = daemon.ssh
    async with daemon.admin() as admin:
        async with (
            user_asset(admin, "user1"),
            user_asset(admin, "user2"),
            user_asset(admin, "user3"),
            user_asset(admin, "user4"),
        ):
            first = await admin.call("user.renew_2fa_secret", "user1", {})
            second = await admin.call(
                "user.renew_2fa_secret", "user2", {"interval": 60, "otp_digits": 8}
            )
            await daemon.seed_secret("user3", LEGACY_SECRET, digits=7)
            await enable_ssh_2fa(admin, window=3)
            assert users_lines(settings.oath_users_path) == [
                ["HOTP/T30/6", "user1", "-", hex_of(secret_of(first))],
                ["HOTP/T60/8", "user2", "-", hex_of(secret_of(second))],
                ["HOTP/T30/7", "user3", "-", hex_of(LEGACY_SECRET)],
            ]
            assert len(hex_of(LEGACY_SECRET)) == 32  # 16 bytes, no padding artefacts
            assert mode_of(settings.oath_users_path) == 0o600
            users_path = settings.oath_users_path.absolute()
            assert pam_oath_lines(settings.pam_snippet_path) == [
                f"auth required pam_oath.so usersfile={users_path} window=3"
            ]
            text = settings.oath_users_path.read_text()
            assert secret_of(first) not in text  # hex only, never the base32 form


async def test_c19_unset_removes_the_user_from_the_users_file(daemon: InProcessDaemon) -> None:
    """C19: after user.unset_2fa_secret the OATH users file no longer lists the user, login
    needs no OTP and provisioning_uri is EINVAL, also after a daemon restart."""
    path = daemon.ssh.oath_users_path
    async with daemon.admin() as admin:
        await enable_ssh_2fa(admin)
        await admin.call("user.create", {"username": "user1", "password": "pw-user1"})
        await admin.call("user.renew_2fa_secret", "user1", {})
        assert line_of(path, "user1") is not None
        await admin.call("user.unset_2fa_secret", "user1")
        assert line_of(path, "user1") is None
    for restart in (False, True):
        if restart:
            await daemon.restart()
        assert line_of(path, "user1") is None
        async with daemon.client() as c:
            login = await c.login("user1", "pw-user1")
            assert login["response_type"] == "SUCCESS"
        async with daemon.admin() as admin:
            with pytest.raises(ClientError) as info:
                await admin.call("user.provisioning_uri", "user1")
            assert (info.value.code, info.value.errname) == (-32001, "EINVAL")
            user = await admin.call("user.query", [["username", "=", "user1"]])
            assert user[0]["twofactor_auth_configured"] is False


async def test_c22_ssh_password_needs_a_secret_while_ssh_2fa_is_on(
    daemon: InProcessDaemon,
) -> None:
    """C22: with global 2FA and services.ssh on, ssh_password_enabled=true for a user without
    a secret is -32602 on create and update; a partial update of window keeps enabled and
    services.ssh; the setting persists; services.ssh has no effect while enabled=false."""
    async with daemon.admin() as admin:
        entry = await enable_ssh_2fa(admin)
        assert (entry["enabled"], entry["services"]) == (True, {"ssh": True})
        async with user_asset(admin, "user2") as user2:
            extra = await invalid_params(
                admin, "user.update", user2["id"], {"ssh_password_enabled": True}
            )
            assert [e[0] for e in extra] == ["user_update.ssh_password_enabled"]
            extra = await invalid_params(
                admin,
                "user.create",
                {"username": "user3", "password": "pw", "ssh_password_enabled": True},
            )
            assert [e[0] for e in extra] == ["user_create.ssh_password_enabled"]
            assert await admin.call("user.query", [["username", "=", "user3"]]) == []
            got = await admin.call("user.get_instance", user2["id"])
            assert got["ssh_password_enabled"] is False

            entry = await admin.call("auth.twofactor.update", {"window": 2})
            assert (entry["enabled"], entry["window"], entry["services"]) == (
                True,
                2,
                {"ssh": True},
            )
            # With a secret the flag is allowed.
            await admin.call("user.renew_2fa_secret", "user2", {})
            got = await admin.call("user.update", user2["id"], {"ssh_password_enabled": True})
            assert got["ssh_password_enabled"] is True
            await admin.call("user.update", user2["id"], {"ssh_password_enabled": False})
            await admin.call("user.unset_2fa_secret", "user2")

            # services.ssh alone (global 2FA off) has no effect: the flag is accepted.
            entry = await admin.call("auth.twofactor.update", {"enabled": False})
            assert entry["services"] == {"ssh": True}
            got = await admin.call("user.update", user2["id"], {"ssh_password_enabled": True})
            assert got["ssh_password_enabled"] is True
            assert users_lines(daemon.ssh.oath_users_path) == []
            await admin.call("user.update", user2["id"], {"ssh_password_enabled": False})
    await daemon.restart()
    async with daemon.admin() as admin:
        config = await admin.call("auth.twofactor.config")
        assert (config["enabled"], config["window"], config["services"]) == (
            False,
            2,
            {"ssh": True},
        )


async def test_turning_ssh_2fa_on_is_refused_while_users_without_secret_have_password_ssh(
    daemon: InProcessDaemon,
) -> None:
    """Turning services.ssh (or global 2FA, with services.ssh already on) on while users
    without a secret have ssh_password_enabled is -32602 on the switch that was turned on,
    naming the users; the configuration stays unchanged."""
    async with daemon.admin() as admin:
        async with (
            user_asset(admin, "nosecret", ssh_password_enabled=True),
            user_asset(admin, "withsecret") as withsecret,
        ):
            await admin.call("user.renew_2fa_secret", "withsecret", {})
            await admin.call("user.update", withsecret["id"], {"ssh_password_enabled": True})
            await admin.call("auth.twofactor.update", {"enabled": True})
            before = await admin.call("auth.twofactor.config")
            extra = await invalid_params(
                admin, "auth.twofactor.update", {"services": {"ssh": True}}
            )
            assert [e[0] for e in extra] == ["auth_twofactor_update.services.ssh"]
            assert "nosecret" in str(extra[0][1]) and "withsecret" not in str(extra[0][1])
            assert await admin.call("auth.twofactor.config") == before
            assert users_lines(daemon.ssh.oath_users_path) == []

            await admin.call("auth.twofactor.update", {"enabled": False, "services": {"ssh": True}})
            extra = await invalid_params(admin, "auth.twofactor.update", {"enabled": True})
            assert [e[0] for e in extra] == ["auth_twofactor_update.enabled"]
            assert (await admin.call("auth.twofactor.config"))["enabled"] is False


async def test_unset_turns_ssh_password_off_while_ssh_2fa_is_on(daemon: InProcessDaemon) -> None:
    """Unsetting the secret of a user with ssh_password_enabled turns the flag off while SSH
    2FA is on (the rule of API.md §5 keeps holding) and leaves it alone otherwise."""
    async with daemon.admin() as admin:
        async with user_asset(admin, "user1") as user1:
            await admin.call("user.renew_2fa_secret", "user1", {})
            await admin.call("user.update", user1["id"], {"ssh_password_enabled": True})
            await admin.call("user.unset_2fa_secret", "user1")
            assert (await admin.call("user.get_instance", user1["id"]))["ssh_password_enabled"]

            await admin.call("user.renew_2fa_secret", "user1", {})
            await enable_ssh_2fa(admin)
            await admin.call("user.unset_2fa_secret", "user1")
            got = await admin.call("user.get_instance", user1["id"])
            assert (got["ssh_password_enabled"], got["twofactor_auth_configured"]) == (False, False)


async def test_rename_and_delete_rewrite_the_users_file(daemon: InProcessDaemon) -> None:
    """Renaming a user with a secret moves their line (with pam_oath's replay state, which
    belongs to the secret); deleting them removes it."""
    path = daemon.ssh.oath_users_path
    async with daemon.admin() as admin:
        await enable_ssh_2fa(admin)
        async with user_asset(admin, "user1") as user1:
            secret_hex = hex_of(secret_of(await admin.call("user.renew_2fa_secret", "user1", {})))
            path.write_text(path.read_text().rstrip("\n") + "\t" + "\t".join(PAM_STATE) + "\n")
            await admin.call("user.update", user1["id"], {"username": "user1b"})
            assert line_of(path, "user1") is None
            assert line_of(path, "user1b") == ["HOTP/T30/6", "user1b", "-", secret_hex, *PAM_STATE]
            assert mode_of(path) == 0o600
            await admin.call("user.delete", user1["id"])
            assert users_lines(path) == []


async def test_pam_oath_state_is_kept_only_for_unchanged_secrets(daemon: InProcessDaemon) -> None:
    """A rewrite keeps the COUNTER/LASTOTP/TIME fields pam_oath appended (its replay
    protection) for unchanged secrets and drops them for a renewed secret; malformed state
    is dropped rather than copied (liboath would refuse the line)."""
    path = daemon.ssh.oath_users_path
    async with daemon.admin() as admin:
        await enable_ssh_2fa(admin)
        async with (
            user_asset(admin, "user1"),
            user_asset(admin, "user2"),
            user_asset(admin, "user3"),
        ):
            for name in ("user1", "user2", "user3"):
                await admin.call("user.renew_2fa_secret", name, {})
            lines = path.read_text().splitlines()
            state = {
                "user1": PAM_STATE,
                "user2": PAM_STATE,
                "user3": ["0", "123456", "yesterday"],
            }
            path.write_text(
                "\n".join(
                    line + "\t" + "\t".join(state[line.split("\t")[1]])
                    if not line.startswith("#")
                    else line
                    for line in lines
                )
                + "\n"
            )
            new2 = await admin.call("user.renew_2fa_secret", "user2", {})
            one, two, three = users_lines(path)
            assert one[1:2] + one[4:] == ["user1", *PAM_STATE]
            assert two == ["HOTP/T30/6", "user2", "-", hex_of(secret_of(new2))]
            assert len(three) == 4


async def test_a_stale_pam_oath_write_back_is_repaired(daemon: InProcessDaemon) -> None:
    """liboath copies the users file it read before taking its lock; if such a stale copy
    lands after a rewrite (here: a removed user comes back), the daemon's re-check writes
    the file again within a few seconds."""
    path = daemon.ssh.oath_users_path
    async with daemon.admin() as admin:
        await enable_ssh_2fa(admin)
        async with user_asset(admin, "user1"):
            await admin.call("user.renew_2fa_secret", "user1", {})
            stale = path.read_text()
            await admin.call("user.unset_2fa_secret", "user1")
            assert line_of(path, "user1") is None
            path.write_text(stale)  # what a racing pam_oath would rename into place
            await wait_until(lambda: line_of(path, "user1") is None, timeout=10)


async def test_startup_rewrites_the_files(daemon: InProcessDaemon) -> None:
    """At start-up the daemon writes both files from the database (a file emptied or
    edited meanwhile is restored)."""
    settings = daemon.ssh
    async with daemon.admin() as admin:
        await enable_ssh_2fa(admin, window=1)
        entry = await admin.call("user.renew_2fa_secret", "admin", {})
    settings.oath_users_path.write_text("")
    settings.pam_snippet_path.unlink()
    await daemon.restart()
    assert users_lines(settings.oath_users_path) == [
        ["HOTP/T30/6", "admin", "-", hex_of(secret_of(entry))]
    ]
    assert mode_of(settings.oath_users_path) == 0o600
    assert pam_oath_lines(settings.pam_snippet_path)[0].endswith(" window=1")


async def test_write_failure_is_a_call_error_an_alert_and_an_audit_entry(
    daemon: InProcessDaemon,
) -> None:
    """When the users file cannot be written (its folder is a regular file), start-up and
    every API call that changes it report it: a -32001 EIO call error naming the path (the
    change itself is saved), the CRITICAL alert SshOathWriteFailed and a failed audit
    entry. Once the path works again, the next change writes the files and clears the
    alert."""
    blocker = daemon.base / "blocker"
    blocker.write_text("a regular file, not a folder\n")
    target = blocker / "users.oath"
    await daemon.restart(oath_users_file=target)
    async with daemon.admin() as admin:
        alerts = [a for a in await admin.call("alert.list") if a["klass"] == ALERT]
        assert len(alerts) == 1 and alerts[0]["level"] == "CRITICAL"
        assert str(blocker) in alerts[0]["formatted"]

        with pytest.raises(ClientError) as info:
            await enable_ssh_2fa(admin)
        err = info.value
        assert (err.code, err.errno, err.errname) == (-32001, 5, "EIO")
        assert str(blocker) in err.reason and "saved" in err.reason
        assert (await admin.call("auth.twofactor.config"))["services"]["ssh"] is True

        with pytest.raises(ClientError) as info:
            await admin.call("user.renew_2fa_secret", "admin", {})
        assert info.value.errname == "EIO"
        uri = await admin.call("user.provisioning_uri", "admin")  # the new secret is saved
        assert secret_of(uri) not in info.value.reason

        audit = await admin.call("audit.query")
        failures = [
            a
            for a in audit
            if not a["success"] and "could not be written" in a["event_data"]["description"]
        ]
        assert [a["event_data"].get("method") for a in failures] == [
            None,  # start-up
            "auth.twofactor.update",
            "user.renew_2fa_secret",
        ]
        assert all(a["event_data"]["error"] == "EIO" for a in failures)
        assert secret_of(uri) not in str(audit)

        blocker.unlink()
        blocker.mkdir()
        await admin.call("auth.twofactor.update", {"window": 1})
        assert [a for a in await admin.call("alert.list") if a["klass"] == ALERT] == []
        assert users_lines(target) == [["HOTP/T30/6", "admin", "-", hex_of(secret_of(uri))]]


@pytest.mark.settings(oath_users_file="/tmp/m2fa no spaces allowed/users.oath")
async def test_a_users_path_pam_cannot_parse_is_refused(daemon: InProcessDaemon) -> None:
    """A users file path with whitespace cannot go into a PAM argument: enabling SSH 2FA is
    a call error that says so (nothing is written there)."""
    async with daemon.admin() as admin:
        with pytest.raises(ClientError) as info:
            await enable_ssh_2fa(admin)
        assert info.value.errname == "EIO" and "whitespace" in info.value.reason
    assert not exists("/tmp/m2fa no spaces allowed")
