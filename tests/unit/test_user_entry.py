"""The user plugin's UserEntry of a stored row: the same JSON as the hand-built entry."""

from __future__ import annotations

import json
from typing import Any

import pytest

from middlewared_2fa.datastore.repositories import UserRow
from middlewared_2fa.schema.user import UserEntry, UserEntryResult
from tests.helpers.plugins import load_plugin

user_plugin = load_plugin("user")


def hand_built(row: UserRow) -> dict[str, Any]:
    """The entry as the plugin built it by hand before it was validated from the row."""
    return {
        "id": row.id,
        "username": row.username,
        "full_name": row.full_name,
        "roles": list(row.roles),
        "locked": row.locked,
        "ssh_password_enabled": row.ssh_password_enabled,
        "twofactor_auth_configured": row.totp_secret is not None,
        "builtin": row.builtin,
    }


ROWS = [
    UserRow(1, "admin", "Administrator", "$argon2id$x", ["FULL_ADMIN"], False, False, True,
            None, 30, 6, None, 0),
    UserRow(7, "carol", "Carol C", "$argon2id$y", ["ACCOUNT_READ", "ACCOUNT_WRITE"], True,
            True, False, "v1.encrypted-seed", 60, 8, 123, 4),
    UserRow(9, "dave", "", None, [], False, False, False, "", 30, 6, None, 1),
]  # fmt: skip


@pytest.mark.parametrize("row", ROWS, ids=[r.username for r in ROWS])
def test_entry_of_row_is_the_hand_built_entry(row: UserRow) -> None:
    """user_entry(row) has the same keys, order, values and JSON as the hand-built entry,
    and never the password hash, the secret or TOTP parameters."""
    entry = user_plugin.user_entry(row)
    assert entry == hand_built(row)
    assert list(entry) == list(hand_built(row))
    assert json.dumps(entry) == json.dumps(hand_built(row))
    assert type(entry["roles"]) is list and entry["roles"] is not row.roles
    assert {"password_hash", "totp_secret", "totp_interval", "generation"}.isdisjoint(entry)


@pytest.mark.parametrize("row", ROWS, ids=[r.username for r in ROWS])
def test_entry_dict_still_validates_as_a_result(row: UserRow) -> None:
    """The entry dict passes the result model unchanged (the dispatcher validates it)."""
    entry = user_plugin.user_entry(row)
    dumped = UserEntryResult.model_validate({"result": entry}).model_dump(mode="json")
    assert dumped == {"result": hand_built(row)}
    assert UserEntry.model_validate(row, from_attributes=True).model_dump() == entry
