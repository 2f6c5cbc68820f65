"""Use cases, framework-free: connectors, accounts, defaults, audit, keys.

Every rule that holds for REST holds for the CLI and the UI because it lives here.
"""

from .accounts import AccountService, BootstrapAdmin
from .connection_tests import run_connection_test
from .connectors import ConnectorService
from .context import Principal, Role
from .defaults import DefaultResolver, ResolvedConnector
from .files import FileStore
from .keys import check_master_key, reencrypt_all
from .params import ParamCodec

__all__ = [
    "AccountService",
    "BootstrapAdmin",
    "ConnectorService",
    "DefaultResolver",
    "FileStore",
    "ParamCodec",
    "Principal",
    "ResolvedConnector",
    "Role",
    "check_master_key",
    "reencrypt_all",
    "run_connection_test",
]
