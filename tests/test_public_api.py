import importlib

import pytest

import jackfield

CONTRACT_NAMES = {
    "Jackfield",
    "ConnectorProvider",
    "ConfigField",
    "ConnectionTestResult",
    "Tier",
    "ConnectorRegistry",
    "connector_registry",
    "unflatten_params",
    "flatten_config",
    "ConnectorError",
    "ConnectorNotFoundError",
    "ConnectorConfigError",
    "ConnectionFailedError",
    "ConnectorNotSupportedError",
}


def test_the_contract_names_are_exported():
    assert CONTRACT_NAMES <= set(jackfield.__all__)
    for name in CONTRACT_NAMES:
        assert getattr(jackfield, name) is not None


@pytest.mark.parametrize(
    "module",
    ["jackfield", "jackfield.kernel", "jackfield.secrets", "jackfield.store", "jackfield.service"],
)
def test_all_lists_exactly_resolvable_names(module):
    mod = importlib.import_module(module)
    for name in mod.__all__:
        assert hasattr(mod, name) or name == "Jackfield", f"{module}.{name}"
    assert len(mod.__all__) == len(set(mod.__all__))
