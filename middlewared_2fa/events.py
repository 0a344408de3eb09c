"""Event subscriptions and ``collection_update`` notifications (API.md §7).

Each event declares the roles that may read it and, optionally, the field that names
the user an entry belongs to, so that a user without roles still sees events about
their own entry. Permissions are re-checked every time an event is forwarded, since a
session may log out or log in as someone else after subscribing.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from middlewared_2fa import roles as _roles
from middlewared_2fa.errors import NotAuthorized, ValidationError
from middlewared_2fa.session import Session

logger = logging.getLogger(__name__)

#: Subscriptions one connection may hold (there are only a handful of events).
MAX_SUBSCRIPTIONS = 32


class Subscriber(Protocol):
    """A connection that can receive notifications."""

    session: Session

    def notify(self, message: dict[str, Any]) -> None:
        """Queue a JSON-RPC notification; must not block."""


@dataclass(slots=True, frozen=True)
class EventSpec:
    """A declared event.

    Attributes:
        name: Collection name, e.g. ``user.query``.
        roles: Roles of which a subscriber needs one (``[]``: any authenticated user).
        owner_field: Field of ``fields`` holding the user id that owns the entry.
    """

    name: str
    roles: tuple[str, ...]
    owner_field: str | None = None


class EventHub:
    """Routes emitted events to the subscribed connections allowed to see them."""

    def __init__(self) -> None:
        self._specs: dict[str, EventSpec] = {}
        self._subs: dict[str, tuple[Subscriber, str]] = {}
        self._ids = itertools.count(1)
        self._listeners: list[Callable[[str, str, Any, dict[str, Any]], None]] = []

    def declare(self, name: str, roles: list[str], owner_field: str | None = None) -> None:
        """Declare event ``name`` (done by plugins at set-up)."""
        self._specs[name] = EventSpec(name, tuple(roles), owner_field)

    @property
    def names(self) -> list[str]:
        return sorted(self._specs)

    def may_subscribe(self, session: Session, name: str) -> bool:
        spec = self._specs.get(name)
        if spec is None or session.identity is None:
            return False
        return spec.owner_field is not None or _roles.has_any(session.granted, spec.roles)

    def subscribe(self, subscriber: Subscriber, name: str) -> str:
        """Subscribe ``subscriber`` to ``name``; returns the subscription id.

        Raises:
            ValidationError: unknown event (attribute ``event``).
            NotAuthorized: the session may not read this collection.
        """
        if name not in self._specs:
            raise ValidationError("event", f"Unknown event {name!r}; known: {self.names}")
        if not self.may_subscribe(subscriber.session, name):
            raise NotAuthorized()
        mine = [k for k, (s, n) in self._subs.items() if s is subscriber]
        for sub_id in mine:
            if self._subs[sub_id][1] == name:  # subscribing twice gives the same id
                return sub_id
        if len(mine) >= MAX_SUBSCRIPTIONS:
            raise ValidationError(
                "event", f"at most {MAX_SUBSCRIPTIONS} subscriptions per connection"
            )
        sub_id = f"sub-{next(self._ids)}"
        self._subs[sub_id] = (subscriber, name)
        return sub_id

    def unsubscribe(self, subscriber: Subscriber, sub_id: str) -> bool:
        """Drop one subscription of ``subscriber``; False when it did not exist."""
        entry = self._subs.get(sub_id)
        if entry is None or entry[0] is not subscriber:
            return False
        del self._subs[sub_id]
        return True

    def drop(self, subscriber: Subscriber) -> None:
        """Forget every subscription of a closed connection."""
        for sub_id in [k for k, (s, _) in self._subs.items() if s is subscriber]:
            del self._subs[sub_id]

    def add_listener(self, listener: Callable[[str, str, Any, dict[str, Any]], None]) -> None:
        """Call ``listener(name, msg, id, fields)`` for every event (in-process consumers)."""
        self._listeners.append(listener)

    def emit(
        self,
        name: str,
        msg: str,
        entry_id: Any,
        fields: dict[str, Any],
        *,
        owner: int | None = None,
    ) -> None:
        """Send ``collection_update`` for ``name`` to every allowed subscriber.

        Args:
            name: Declared event name.
            msg: ``added``, ``changed`` or ``removed``.
            entry_id: Id of the entry.
            fields: The entry (must contain no secret).
            owner: User id owning the entry, when it is not a field of ``fields``
                (its user may see it without the collection's read role).
        """
        spec = self._specs[name]
        message = {
            "jsonrpc": "2.0",
            "method": "collection_update",
            "params": {"msg": msg, "collection": name, "id": entry_id, "fields": fields},
        }
        for subscriber, sub_name in list(self._subs.values()):
            if sub_name != name:
                continue
            session = subscriber.session
            if session.identity is None:
                continue
            allowed = _roles.has_any(session.granted, spec.roles)
            if not allowed and spec.owner_field is not None:
                # By id, not name: a session of a renamed or deleted account must not see
                # a new account that got its name.
                owner_id = owner if owner is not None else fields.get(spec.owner_field)
                allowed = session.identity.user_id is not None and (
                    owner_id == session.identity.user_id
                )
            if allowed:
                subscriber.notify(message)
        for listener in self._listeners:
            try:
                listener(name, msg, entry_id, fields)
            except Exception:
                logger.exception("event listener failed for %s", name)
