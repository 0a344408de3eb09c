"""The one error-mapping table (API.md §2): each exception class to its JSON-RPC code,
message and ``data`` (errno, errname, reason, trace, extra)."""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, model_validator
from pydantic import ValidationError as PydanticValidationError

from middlewared_2fa import errors as E
from middlewared_2fa.dispatcher import InvalidRequest, error_for

SECRET = "hunter2-0xSECRET"


def mapped(exc: BaseException, *, method: str | None = "x.method", debug: bool = False) -> Any:
    return error_for(exc, method=method, request_id=7, debug=debug)


def data(
    errno: int, errname: str, reason: str, extra: Any = None, trace: Any = None
) -> dict[str, Any]:
    return {"error": errno, "errname": errname, "reason": reason, "trace": trace, "extra": extra}


def test_validation_errors() -> None:
    """ValidationErrors: -32602 "Invalid params", EINVAL, the triples and joined reason."""
    exc = E.ValidationErrors([("a.b", "bad", E.EINVAL), ("c", "worse", E.EEXIST)])
    assert mapped(exc) == (
        -32602,
        "Invalid params",
        data(
            22,
            "EINVAL",
            "[EINVAL] a.b: bad\n[EEXIST] c: worse",
            [["a.b", "bad", 22], ["c", "worse", 17]],
        ),
    )


def test_single_validation_error() -> None:
    """ValidationError (one attribute) maps like ValidationErrors."""
    assert mapped(E.ValidationError("filters", "unknown field 'x'")) == (
        -32602,
        "Invalid params",
        data(
            22,
            "EINVAL",
            "[EINVAL] filters: unknown field 'x'",
            [["filters", "unknown field 'x'", 22]],
        ),
    )


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    kind: Literal["A", "B"] = "A"
    count: int = 0

    @model_validator(mode="after")
    def _whole(self) -> Strict:
        if self.count == 13:
            raise ValueError("unlucky")
        return self


def _pydantic_error(value: Any) -> PydanticValidationError:
    try:
        Strict.model_validate(value)
    except PydanticValidationError as exc:
        return exc
    raise AssertionError("expected a validation error")


def test_pydantic_error_escaping_a_method() -> None:
    """A pydantic error raised inside a method is -32602 with its loc as the path, and an
    error of a whole model is reported at the method's name (or ``params``)."""
    code, message, body = mapped(_pydantic_error({"count": "1"}))
    assert (code, message) == (-32602, "Invalid params")
    assert body["extra"] == [["count", "Input should be a valid integer", 22]]
    assert mapped(_pydantic_error({"count": 13}))[2]["extra"] == [["x.method", "unlucky", 22]]
    assert mapped(_pydantic_error({"count": 13}), method=None)[2]["extra"] == [
        ["params", "unlucky", 22]
    ]


def test_pydantic_error_never_echoes_input() -> None:
    """A rejected value is in no message; an unknown key is named, as the attribute."""
    body = mapped(_pydantic_error({"kind": SECRET, "count": SECRET, "unknown_key": SECRET}))[2]
    assert SECRET not in json.dumps(body)
    assert [e[0] for e in body["extra"]] == ["kind", "count", "unknown_key"]


@pytest.mark.parametrize(
    ("exc", "errno", "errname", "reason", "extra"),
    [
        (E.CallError("User exists", E.EEXIST, ["admin"]), 17, "EEXIST", "User exists", ["admin"]),
        (E.CallError("plain"), 22, "EINVAL", "plain", None),
        (E.CallError("Rate Limit Exceeded", E.EBUSY), 16, "EBUSY", "Rate Limit Exceeded", None),
        (E.NotAuthenticated(), 207, "ENOTAUTHENTICATED", "Not authenticated", None),
        (E.NotAuthorized(), 13, "EACCES", "Not authorized", None),
        (E.CallError("odd", 1000), 1000, "E1000", "odd", None),
    ],
)
def test_call_errors(exc: E.CallError, errno: int, errname: str, reason: str, extra: Any) -> None:
    """CallError and its subclasses: -32001 "Method call error" with their errno."""
    assert mapped(exc) == (-32001, "Method call error", data(errno, errname, reason, extra))


def test_method_not_found() -> None:
    """MethodNotFound: -32601 "Method does not exist", the name cut to 120 characters."""
    assert mapped(E.MethodNotFound("no.such")) == (
        -32601,
        "Method does not exist",
        data(22, "EINVAL", "Method 'no.such' does not exist"),
    )
    long_name = "m" * 500
    reason = mapped(E.MethodNotFound(long_name))[2]["reason"]
    assert reason == f"Method {'m' * 120!r} does not exist"


def test_too_many_calls() -> None:
    """TooManyCalls: -32000 with EBUSY."""
    assert mapped(E.TooManyCalls()) == (
        -32000,
        "Too many concurrent calls",
        data(16, "EBUSY", "Too many concurrent calls on this connection; wait for replies"),
    )


def test_invalid_request() -> None:
    """InvalidRequest: -32600 "Invalid Request" with what was wrong."""
    assert mapped(InvalidRequest('"jsonrpc" must be exactly "2.0"'), method=None) == (
        -32600,
        "Invalid Request",
        data(22, "EINVAL", 'Invalid Request: "jsonrpc" must be exactly "2.0"'),
    )


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_unknown_exception_is_internal_without_text(caplog: pytest.LogCaptureFixture) -> None:
    """Any other exception is -32603 without its text or trace, logged with the method
    and the request id."""
    exc = _raised(RuntimeError(SECRET))
    with caplog.at_level(logging.ERROR, logger="middlewared_2fa.dispatcher"):
        result = mapped(exc, method="broken.explode")
    assert result == (
        -32603,
        "Internal error",
        data(22, "EINVAL", "Internal error; the daemon log has the details"),
    )
    assert SECRET not in json.dumps(result)
    (record,) = [r for r in caplog.records if r.name == "middlewared_2fa.dispatcher"]
    assert record.getMessage() == "internal error in broken.explode (request id 7)"
    assert record.exc_info is not None and record.exc_info[1] is exc


def test_unknown_exception_with_debug_has_the_trace() -> None:
    """With ``--debug`` the class and the formatted traceback are in ``data.trace``."""
    exc = _raised(KeyError(SECRET))
    code, message, body = mapped(exc, debug=True)
    assert (code, message, body["reason"]) == (
        -32603,
        "Internal error",
        "Internal error; the daemon log has the details",
    )
    assert body["trace"]["class"] == "KeyError"
    assert body["trace"]["formatted"].startswith("Traceback (most recent call last):")
    assert SECRET in body["trace"]["formatted"]


def test_debug_changes_only_internal_errors() -> None:
    """``debug`` adds a trace to -32603 only: typed errors are the same either way."""
    for exc in (E.CallError("x"), E.ValidationError("a", "b"), E.MethodNotFound("m")):
        assert mapped(exc, debug=True) == mapped(exc, debug=False)
        assert mapped(exc, debug=True)[2]["trace"] is None
