"""Jackfield: a connector framework and runtime for Python."""

from .kernel import (
    ConfigField,
    ConnectionFailedError,
    ConnectionTestResult,
    ConnectorConfigError,
    ConnectorError,
    ConnectorNotFoundError,
    ConnectorNotSupportedError,
    ConnectorProvider,
    ConnectorRegistry,
    Tier,
    connector_registry,
    flatten_config,
    unflatten_params,
)

__all__ = [
    "ConfigField",
    "ConnectionFailedError",
    "ConnectionTestResult",
    "ConnectorConfigError",
    "ConnectorError",
    "ConnectorNotFoundError",
    "ConnectorNotSupportedError",
    "ConnectorProvider",
    "ConnectorRegistry",
    "Jackfield",
    "Tier",
    "connector_registry",
    "flatten_config",
    "unflatten_params",
]


def __getattr__(name: str) -> object:
    # The facade pulls in the store and runtime; providers importing the SDK don't need them.
    if name == "Jackfield":
        from .app import Jackfield

        return Jackfield
    raise AttributeError(name)
