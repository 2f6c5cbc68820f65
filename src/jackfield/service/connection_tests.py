"""Running a provider's ``test_connection``: every failure becomes a result.

A test runs in the provider-call pool (``kernel.PROVIDER_CALLS``) under a deadline: a
test that never returns (a vendor SDK without a timeout) would otherwise hold the REST
call, the UI's Test button or the CLI for good. When the deadline passes, the test is
reported as failed; its thread finishes on its own (Python cannot stop a thread; it is a
daemon, so it does not keep the process from exiting), and the provider is left to it
rather than closed under its feet.
"""

from __future__ import annotations

import contextvars
import reprlib
from collections.abc import Callable, Mapping
from concurrent import futures
from typing import Any

from pydantic_core import PydanticSerializationError, to_jsonable_python

from ..kernel import call_sync
from ..kernel._async import PROVIDER_CALLS
from ..kernel.errors import ConnectorError
from ..kernel.provider import ConnectionTestResult, ConnectorProvider
from ..kernel.redaction import get_logger
from ..secrets import redactor

log = get_logger(__name__)
TEST_TIMEOUT_SECONDS = 30.0


def run_connection_test(
    cls: type[ConnectorProvider],
    make_provider: Callable[[], ConnectorProvider],
    org: str,
    timeout: float = TEST_TIMEOUT_SECONDS,
) -> ConnectionTestResult:
    """Instantiate and test within ``timeout`` seconds; every failure becomes a result,
    with ``org``'s secrets masked."""
    provider: ConnectorProvider | None = None
    pending: futures.Future[Any] | None = None
    try:
        provider = make_provider()
        call = contextvars.copy_context().run
        pending = PROVIDER_CALLS.submit(call, call_sync, provider.test_connection)
        # waiting is apart from the outcome: a Ctrl-C of the CLI interrupts the wait and
        # goes on up, while the provider's own SystemExit is only the future's exception
        if not futures.wait([pending], timeout).done:
            result = ConnectionTestResult(
                False,
                f"the connection test did not finish within {timeout:g} s",
                {"remediation": "Check that the system answers; the provider may lack a timeout."},
            )
        elif isinstance(failure := pending.exception(), SystemExit | KeyboardInterrupt):
            result = _stopped_the_process(cls, failure)
        else:
            result = _checked(pending.result())
    except ConnectorError as exc:
        details = {"code": exc.code, "remediation": exc.remediation, **exc.details}
        result = ConnectionTestResult(False, exc.message, details)
    except Exception as exc:
        log.exception("connection test of %s crashed", cls.provider_type)
        result = ConnectionTestResult(False, f"unexpected error ({type(exc).__name__}): {exc}")
    finally:
        # a provider still in its test is left to it, not closed under its feet
        if provider is not None and (pending is None or pending.done()):
            try:
                call_sync(provider.close)
            except Exception:
                log.warning("closing %s after its test failed", cls.provider_type, exc_info=True)
    return ConnectionTestResult(
        result.success,
        redactor.redact(result.message, org=org),
        redactor.redact_obj(result.details, org=org),
    )


def _checked(result: object) -> ConnectionTestResult:
    """``result`` if it keeps the contract, else a failed result naming the provider's bug.

    A truthy dict is no proof of a connection (it could then be activated). Details must
    be JSON -- they are answered by REST and printed by the CLI: a value without a JSON
    form failed the REST answer (a 500) after the connector was stored as connected.
    They are converted here once (dates, UUIDs and the like become text, as REST shows
    them), so every caller shows and redacts the same values.
    """
    if not isinstance(result, ConnectionTestResult):
        return ConnectionTestResult(
            False,
            f"test_connection() must return a ConnectionTestResult, "
            f"not {type(result).__name__}: {reprlib.repr(result)}",
        )
    if result.details is None:
        return result
    if not isinstance(result.details, Mapping):
        return ConnectionTestResult(
            False,
            f"test_connection() returned details that are not a dict but "
            f"{type(result.details).__name__}: the provider must return a dict or None",
        )
    try:
        details = to_jsonable_python(result.details)
    except (PydanticSerializationError, ValueError) as exc:  # (bytes not UTF-8, a cycle)
        return ConnectionTestResult(
            False,
            f"test_connection() returned details that cannot be shown as JSON ({exc}): "
            f"the provider must return only JSON values (text, numbers, lists, dicts)",
        )
    return ConnectionTestResult(result.success, result.message, details)


def _stopped_the_process(cls: type[ConnectorProvider], exc: BaseException) -> ConnectionTestResult:
    """The result of a test that raised ``SystemExit`` or ``KeyboardInterrupt``: in the
    provider's thread these only end its call, so they are a failed test, not the exit of
    the CLI (with the provider's code and nothing printed) or a bare 500 of the API."""
    log.error("connection test of %s crashed", cls.provider_type, exc_info=exc)
    return ConnectionTestResult(
        False,
        f"test_connection() raised {type(exc).__name__}({exc}): a bug in the provider, "
        f"which must report a failure as a ConnectorError or a failed result, "
        f"not stop the process",
    )
