"""Running a provider's ``test_connection``: every failure becomes a result.

A test runs in the provider-call pool (``kernel.PROVIDER_CALLS``) under a deadline: a
test that never returns (a vendor SDK without a timeout) would otherwise hold the REST
call, the UI's Test button or the CLI for good. When the deadline passes, the test is
reported as failed; its thread finishes on its own (Python cannot stop a thread), and the
provider is left to it rather than closed under its feet.
"""

from __future__ import annotations

import contextvars
import reprlib
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout

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
    finished = True
    try:
        provider = make_provider()
        call = contextvars.copy_context().run
        pending = PROVIDER_CALLS.submit(call, call_sync, provider.test_connection)
        try:
            result = pending.result(timeout)
        except FutureTimeout:
            finished = False
            result = ConnectionTestResult(
                False,
                f"the connection test did not finish within {timeout:g} s",
                {"remediation": "Check that the system answers; the provider may lack a timeout."},
            )
        if not isinstance(result, ConnectionTestResult):
            # a truthy dict is no proof of a connection: it could then be activated
            shown = reprlib.repr(result)
            result = ConnectionTestResult(
                False,
                f"test_connection() must return a ConnectionTestResult, "
                f"not {type(result).__name__}: {shown}",
            )
    except ConnectorError as exc:
        details = {"code": exc.code, "remediation": exc.remediation, **exc.details}
        result = ConnectionTestResult(False, exc.message, details)
    except Exception as exc:
        log.exception("connection test of %s crashed", cls.provider_type)
        result = ConnectionTestResult(False, f"unexpected error ({type(exc).__name__}): {exc}")
    finally:
        if provider is not None and finished:
            try:
                call_sync(provider.close)
            except Exception:
                log.warning("closing %s after its test failed", cls.provider_type, exc_info=True)
    return ConnectionTestResult(
        result.success,
        redactor.redact(result.message, org=org),
        redactor.redact_obj(result.details, org=org),
    )
