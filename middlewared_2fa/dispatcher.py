"""JSON-RPC 2.0 envelope handling. The one place that knows jsonrpcserver, and the one
table that turns exceptions into JSON-RPC errors (API.md §2).

Flow for one text frame: parse (-32700) -> batch or single (JSON-RPC 2.0 §6) -> envelope
check (-32600, §4) -> admission against the connection's concurrency limit (-32000) ->
jsonrpcserver finds the method (-32601) and calls our entry, which checks
authentication, rate limit and roles, validates the parameters with the method's
pydantic model (-32602), runs it and validates its result.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import math
import traceback
import types
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol, Union, get_args, get_origin

from jsonrpcserver import Error, Success
from jsonrpcserver.async_dispatcher import dispatch_request
from jsonrpcserver.dispatcher import create_request, to_response
from jsonrpcserver.response import to_serializable_one
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from middlewared_2fa import errors as E
from middlewared_2fa.api import CallContext, RegisteredMethod
from middlewared_2fa.roles import has_any

if TYPE_CHECKING:
    from middlewared_2fa.middleware import Middleware
    from middlewared_2fa.session import Session

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


class Caller(Protocol):
    """What the dispatcher needs from a connection."""

    session: Session

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


def _unwrap(tp: Any) -> Any:
    """``tp`` without ``Annotated`` and without ``| None`` (pydantic gives neither a place
    in an error's ``loc``)."""
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    if get_origin(tp) in (Union, types.UnionType):
        members = [m for m in get_args(tp) if m is not type(None)]
        if len(members) == 1:
            return _unwrap(members[0])
    return tp


def _branch_labels(tp: Any) -> set[str]:
    """How pydantic may name a union member in ``loc``: its type name, or (tagged unions)
    the value of its ``Literal`` discriminator field."""
    labels = {str(getattr(tp, "__name__", tp))}
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        for info in tp.model_fields.values():
            if get_origin(_unwrap(info.annotation)) is Literal:
                labels.update(str(v) for v in get_args(_unwrap(info.annotation)))
    return labels


def _child(tp: Any, item: int | str) -> Any:
    """The type found at ``item`` inside ``tp`` (a model field, a list item, a dict value);
    None when unknown."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        info = tp.model_fields.get(str(item))
        return info.annotation if info is not None else None
    args = get_args(tp)
    if get_origin(tp) in (list, set, frozenset) and args:
        return args[0]
    if get_origin(tp) is dict and len(args) == 2:
        return args[1]
    return None


def attribute_path(model: type[BaseModel] | None, loc: tuple[int | str, ...]) -> str:
    """A pydantic error ``loc`` as the dotted attribute path of API.md §2.

    pydantic puts a label in ``loc`` for the union member it tried (the discriminator
    value ``OTP_TOKEN`` of ``login_data``, or a type name): that is not an attribute, so
    the same field gets the same path whichever method or union member it came through
    (``login_data.otp_token``, not ``login_data.OTP_TOKEN.otp_token``).

    Args:
        model: The model that was validated (None: keep ``loc`` as it is).
        loc: The error's location.
    """
    parts: list[str] = []
    current: Any = model
    for item in loc:
        current = _unwrap(current)
        if get_origin(current) in (Union, types.UnionType):
            current = next((m for m in get_args(current) if str(item) in _branch_labels(m)), None)
            continue
        parts.append(str(item))
        current = _child(current, item)
    return ".".join(parts)


def _pydantic_to_validation(
    exc: PydanticValidationError, root: str, model: type[BaseModel] | None = None
) -> E.ValidationErrors:
    errors = E.ValidationErrors()
    for err in exc.errors(include_url=False, include_input=False):
        path = attribute_path(model, tuple(err["loc"])) or root
        message = err["msg"]
        if err["type"] == "union_tag_invalid":  # pydantic quotes the input: never echo it
            message = f"must be one of {err.get('ctx', {}).get('expected_tags', '')}"
        errors.add(path, message, E.EINVAL)
    return errors


def error_for(
    exc: BaseException, *, method: str | None, request_id: Any, debug: bool
) -> tuple[int, str, dict[str, Any]]:
    """THE error-mapping table: exception -> (code, message, data). API.md §2.

    Unknown exceptions are bugs: logged with the request id and answered -32603 with
    no exception text (the traceback only in ``data.trace`` with ``--debug``).
    """
    if isinstance(exc, PydanticValidationError):
        exc = _pydantic_to_validation(exc, method or "params")
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
        self._entries: dict[str, Callable[..., Awaitable[Any]]] = {
            name: self._make_entry(method)
            for name, method in middleware.methods.items()
            if not method.spec.private
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
        ctx = CallContext(self.middleware, caller.session, method, caller)
        request = {"jsonrpc": "2.0", "method": method, "params": message.get("params", [])}
        if has_id:
            request["id"] = request_id
        # jsonrpcserver's per-request step (method lookup, argument binding, the call).
        # Its dispatch_to_response_pure() would also wrap this single, already parsed and
        # checked request in asyncio.gather(), i.e. a Task and two more turns of the event
        # loop per call.
        try:
            parsed, result = await dispatch_request(
                self._entries,  # type: ignore[arg-type]
                ctx,
                create_request(request),
            )
        except Exception as exc:  # jsonrpcserver itself failed: a bug
            return _reply_error(request_id, exc, method, self.debug)
        if not has_id:  # a notification: it ran, nothing goes back
            return None
        response = to_serializable_one(to_response(parsed, result))  # type: ignore[arg-type]
        if isinstance(response, dict) and "result" in response:
            return {"jsonrpc": "2.0", "id": request_id, "result": response["result"]}
        error = response.get("error") if isinstance(response, dict) else None
        if isinstance(error, dict) and error.get("code") == METHOD_NOT_FOUND:
            return _reply_error(request_id, E.MethodNotFound(method), method, False)
        if isinstance(error, dict) and isinstance(error.get("data"), dict):
            return {"jsonrpc": "2.0", "id": request_id, "error": error}
        # jsonrpcserver itself failed (it reports its own errors as bare text): a bug.
        return _reply_error(request_id, RuntimeError("dispatch failed"), method, self.debug)

    def _make_entry(self, method: RegisteredMethod) -> Callable[..., Awaitable[Any]]:
        async def entry(ctx: CallContext, /, *args: Any, **kwargs: Any) -> Any:
            try:
                return Success(await self.invoke(method, ctx, args, kwargs))
            except Exception as exc:
                code, message, data = error_for(
                    exc, method=method.name, request_id=None, debug=self.debug
                )
                return Error(code, message, data)

        # jsonrpcserver checks the arguments with inspect.signature(entry).bind() on every
        # call; computing the signature once here saves about a fifth of a core.ping.
        entry.__signature__ = inspect.signature(entry)  # type: ignore[attr-defined]
        return entry

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
            if not has_any(session.granted, spec.roles):
                raise E.NotAuthorized()
        try:
            values = bind_params(method, args, kwargs)
            result = await method.func(ctx, **values)
        except Exception as exc:
            if spec.audit:
                await mw.audit(
                    "METHOD_CALL",
                    session,
                    success=False,
                    description=f"call {method.name}",
                    method=method.name,
                    error=E.errname(getattr(exc, "errno", E.EINVAL)),
                )
            raise
        if spec.audit:
            await mw.audit(
                "METHOD_CALL",
                session,
                success=True,
                description=f"call {method.name}",
                method=method.name,
            )
        try:
            dumped = spec.returns.model_validate({"result": result}).model_dump(mode="json")
        except PydanticValidationError as exc:
            # The method broke its own result model: a bug (-32603), not the caller's fault.
            raise RuntimeError(f"{method.name} returned an invalid result") from exc
        return dumped["result"]


def bind_params(
    method: RegisteredMethod, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """Map positional (array) or by-name (object) params onto the Args model and validate.

    Returns:
        Parameter name -> validated value.

    Raises:
        ValidationErrors: too many positional params (attribute: the method name), a
            missing or unknown parameter, or an invalid value (dotted path).
    """
    fields = method.params
    if args:
        if len(args) > len(fields):
            raise E.ValidationError(
                method.name,
                f"accepts at most {len(fields)} positional parameter(s), {len(args)} given",
            )
        raw = dict(zip(fields, args, strict=False))
    else:
        raw = kwargs
    try:
        model = method.spec.accepts.model_validate(raw)
    except PydanticValidationError as exc:
        raise _pydantic_to_validation(exc, method.name, method.spec.accepts) from None
    return {name: getattr(model, name) for name in fields}
