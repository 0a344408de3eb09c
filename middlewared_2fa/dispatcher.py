"""JSON-RPC 2.0 envelope handling, and the one table that turns exceptions into JSON-RPC
errors (API.md §2).

Flow for one text frame: parse (-32700) -> batch or single (JSON-RPC 2.0 §6) -> envelope
check (-32600, §4) -> admission against the connection's concurrency limit (-32000) ->
method lookup (-32601) -> :meth:`Dispatcher.invoke`, which checks authentication, rate
limit and roles, binds and validates the parameters (:mod:`middlewared_2fa.validation`,
-32602), runs the method and validates its result.

The per-request step is ours, not jsonrpcserver's: its public entry points
(``async_dispatch*``) parse the text again and wrap every request in ``asyncio.gather``
(a Task and two more event-loop turns per call, about half of the dispatch CPU of
``core.ping``: bench/results.md, optimisation 2), and the step without them is not
public API. What that step did for us is a dictionary lookup and a call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import traceback
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError as PydanticValidationError

from middlewared_2fa import errors as E
from middlewared_2fa.api import CallContext, CallerConnection, RegisteredMethod
from middlewared_2fa.roles import has_any
from middlewared_2fa.validation import bind_params, validation_errors

if TYPE_CHECKING:
    from middlewared_2fa.middleware import Middleware

logger = logging.getLogger(__name__)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
TOO_MANY_CALLS = -32000
CALL_ERROR = -32001

#: Requests in one batch (JSON-RPC 2.0 §6 sets no limit; every member gets an answer).
MAX_BATCH = 50


class Caller(CallerConnection, Protocol):
    """What the dispatcher needs from a connection (besides what methods see)."""

    def try_admit(self) -> bool:
        """Reserve a slot (running or queued); False when the connection is full."""

    def release(self) -> None:
        """Free a slot taken by :meth:`try_admit`."""

    @property
    def run_slots(self) -> asyncio.Semaphore:
        """Bounds the calls that run at once."""


class InvalidRequest(Exception):
    """The message is not a JSON-RPC 2.0 request object (-32600)."""


def _data(
    errno: int, reason: str, extra: list[Any] | None = None, trace: Any = None
) -> dict[str, Any]:
    return {
        "error": errno,
        "errname": E.errname(errno),
        "reason": reason,
        "trace": trace,
        "extra": extra,
    }


def error_for(
    exc: BaseException, *, method: str | None, request_id: Any, debug: bool
) -> tuple[int, str, dict[str, Any]]:
    """THE error-mapping table: exception -> (code, message, data). API.md §2.

    Unknown exceptions are bugs: logged with the request id and answered -32603 with
    no exception text (the traceback only in ``data.trace`` with ``--debug``).
    """
    if isinstance(exc, PydanticValidationError):
        exc = validation_errors(exc, method or "params")
    if isinstance(exc, E.ValidationErrors):
        extra = [[a, m, e] for a, m, e in exc.errors]
        return INVALID_PARAMS, "Invalid params", _data(E.EINVAL, exc.reason, extra)
    if isinstance(exc, E.CallError):
        return CALL_ERROR, "Method call error", _data(exc.errno, exc.reason, exc.extra)
    if isinstance(exc, E.MethodNotFound):
        return (
            METHOD_NOT_FOUND,
            "Method does not exist",
            _data(E.EINVAL, f"Method {str(exc)[:120]!r} does not exist"),
        )
    if isinstance(exc, E.TooManyCalls):
        return (
            TOO_MANY_CALLS,
            "Too many concurrent calls",
            _data(E.EBUSY, "Too many concurrent calls on this connection; wait for replies"),
        )
    if isinstance(exc, InvalidRequest):
        return INVALID_REQUEST, "Invalid Request", _data(E.EINVAL, f"Invalid Request: {exc}")
    logger.error(
        "internal error in %s (request id %r)",
        method,
        request_id,
        exc_info=(type(exc), exc, exc.__traceback__),
    )
    trace = None
    if debug:
        trace = {
            "class": type(exc).__name__,
            "formatted": "".join(traceback.format_exception(exc)),
        }
    return (
        INTERNAL_ERROR,
        "Internal error",
        _data(E.EINVAL, "Internal error; the daemon log has the details", None, trace),
    )


def _reply_error(
    request_id: Any, exc: BaseException, method: str | None, debug: bool
) -> dict[str, Any]:
    code, message, data = error_for(exc, method=method, request_id=request_id, debug=debug)
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "error": {"code": code, "message": message, "data": data},
    }


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _valid_id(value: Any) -> bool:
    # 1e400 parses as inf, which has no JSON spelling to echo back: not a valid id.
    return (
        value is None
        or isinstance(value, str)
        or (isinstance(value, int) and not isinstance(value, bool))
        or (isinstance(value, float) and math.isfinite(value))
    )


def _check_envelope(message: Any) -> None:
    """Raise InvalidRequest unless ``message`` is a request object (JSON-RPC 2.0 §4)."""
    if not isinstance(message, dict):
        raise InvalidRequest("a request must be a JSON object")
    if message.get("jsonrpc") != "2.0":
        raise InvalidRequest('"jsonrpc" must be exactly "2.0"')
    if not isinstance(message.get("method"), str):
        raise InvalidRequest('"method" must be a string')
    if "params" in message and not isinstance(message["params"], list | dict):
        raise InvalidRequest('"params" must be an array or an object')
    if "id" in message and not _valid_id(message["id"]):
        raise InvalidRequest('"id" must be a string, a number or null')


class Dispatcher:
    """Turns one incoming text frame into the reply text (or None: nothing to send).

    Args:
        middleware: The daemon, with its method registry.
    """

    def __init__(self, middleware: Middleware) -> None:
        self.middleware = middleware
        self.debug = middleware.settings.debug
        #: What the wire may call: private methods are not found (-32601).
        self._methods: dict[str, RegisteredMethod] = {
            name: method for name, method in middleware.methods.items() if not method.spec.private
        }

    async def handle(self, text: str | bytes, caller: Caller) -> str | None:
        """Process one frame; returns the serialised reply, or None for notifications."""
        try:
            if isinstance(text, bytes):
                text = text.decode("utf-8")
            payload = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            reason = str(exc)[:200] if not isinstance(exc, RecursionError) else "nested too deeply"
            return self._dump(
                {
                    "jsonrpc": "2.0",
                    "id": None,
                    "error": {
                        "code": PARSE_ERROR,
                        "message": "Parse error",
                        "data": _data(E.EINVAL, f"Parse error: {reason}"),
                    },
                }
            )
        if isinstance(payload, list):
            if not payload:
                return self._dump(_reply_error(None, InvalidRequest("empty batch"), None, False))
            if len(payload) > MAX_BATCH:
                # Each member is answered: an unbounded batch turns 8 KiB in into megabytes out.
                return self._dump(
                    _reply_error(
                        None,
                        InvalidRequest(f"a batch holds at most {MAX_BATCH} requests"),
                        None,
                        False,
                    )
                )
            replies = await asyncio.gather(*(self._one(m, caller) for m in payload))
            batch = [r for r in replies if r is not None]
            return self._dump(batch) if batch else None
        reply = await self._one(payload, caller)
        return None if reply is None else self._dump(reply)

    def _dump(self, value: Any) -> str:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)

    async def _one(self, message: Any, caller: Caller) -> dict[str, Any] | None:
        has_id = isinstance(message, dict) and "id" in message
        request_id = message.get("id") if has_id and _valid_id(message.get("id")) else None
        try:
            _check_envelope(message)
        except InvalidRequest as exc:
            return _reply_error(request_id, exc, None, False)
        method = message["method"]
        if not caller.try_admit():
            return _reply_error(request_id, E.TooManyCalls(), method, False) if has_id else None
        try:
            async with caller.run_slots:
                return await self._call(message, method, request_id, has_id, caller)
        finally:
            caller.release()

    async def _call(
        self, message: dict[str, Any], method: str, request_id: Any, has_id: bool, caller: Caller
    ) -> dict[str, Any] | None:
        registered = self._methods.get(method)
        if registered is None:
            if not has_id:
                return None
            return _reply_error(request_id, E.MethodNotFound(method), method, False)
        ctx = CallContext(self.middleware, caller.session, method, caller)
        params = message.get("params", [])
        args = tuple(params) if isinstance(params, list) else ()
        kwargs = params if isinstance(params, dict) else {}
        try:
            result = await self.invoke(registered, ctx, args, kwargs)
        except Exception as exc:
            # Mapped (and a bug logged) for a notification too; only the reply is dropped.
            reply = _reply_error(request_id, exc, method, self.debug)
            return reply if has_id else None
        if not has_id:  # a notification: it ran, nothing goes back
            return None
        return {"jsonrpc": "2.0", "id": request_id, "result": result}

    async def invoke(
        self,
        method: RegisteredMethod,
        ctx: CallContext,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """Check access, validate, run and validate the result of one call.

        Raises:
            NotAuthenticated, NotAuthorized, CallError (EBUSY rate limit),
            ValidationErrors, or whatever the method raises.
        """
        spec = method.spec
        session = ctx.session
        mw = self.middleware
        # The per-address limit of unauthenticated calls (API.md §3); the method's
        # declared policy says whether it also counts on a logged-in session.
        if (
            (not session.authenticated or spec.rate_limit == "always")
            and spec.rate_limit != "exempt"
            and not mw.rate_limiter.allow(session.address)
        ):
            raise E.CallError("Rate Limit Exceeded", E.EBUSY)
        if spec.auth == "required":
            if not session.authenticated:
                raise E.NotAuthenticated()
            expires = session.identity.expires_at if session.identity else None
            if expires is not None and mw.clock.time() >= expires:
                # The session's credential (an API key) expired: it ends (API.md §9).
                mw.sessions.end(session.id)
                raise E.NotAuthenticated()
            if not spec.setup and session.setup_only:
                raise E.SetupRequired()  # before the roles: an admin's too (API.md §4)
            if not has_any(session.granted, spec.roles):
                raise E.NotAuthorized()
        values: dict[str, Any] | None = None
        try:
            values = bind_params(method, args, kwargs)
            result = await method.func(ctx, **values)
        except Exception as exc:
            if spec.audit:
                await mw.audit(
                    "METHOD_CALL",
                    session,
                    success=False,
                    description=_audit_description(method, values),
                    method=method.name,
                    error=E.errname(getattr(exc, "errno", E.EINVAL)),
                )
            raise
        if spec.audit:
            await mw.audit(
                "METHOD_CALL",
                session,
                success=True,
                description=_audit_description(method, values),
                method=method.name,
            )
        try:
            dumped = spec.returns.model_validate({"result": result}).model_dump(mode="json")
        except PydanticValidationError as exc:
            # The method broke its own result model: a bug (-32603), not the caller's fault.
            raise RuntimeError(f"{method.name} returned an invalid result") from exc
        return dumped["result"]


def _audit_description(method: RegisteredMethod, values: dict[str, Any] | None) -> str:
    """The METHOD_CALL entry's description: the method's ``audit`` text (``call NAME`` by
    default) and its ``audit_extended`` part when the parameters were valid."""
    spec = method.spec
    text = spec.audit if isinstance(spec.audit, str) else f"call {method.name}"
    if spec.audit_extended is not None and values is not None:
        try:
            text = f"{text} {spec.audit_extended(**values)}"
        except Exception:
            logger.exception("audit_extended of %s failed", method.name)
    return text
