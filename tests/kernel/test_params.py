import pytest

from jackfield import ConnectorConfigError, flatten_config, unflatten_params


def test_unflatten_builds_nested_config_in_sequence_order():
    params = [
        {"key": "installed.client_secret", "value": "s", "sequence": 30},
        {"key": "installed.client_id", "value": "id", "sequence": 10},
        {"key": "host", "value": "h", "sequence": 20},
    ]
    config = unflatten_params(params)
    assert config == {"installed": {"client_id": "id", "client_secret": "s"}, "host": "h"}
    assert list(config) == ["installed", "host"]
    assert list(config["installed"]) == ["client_id", "client_secret"]


def test_later_sequence_wins_for_the_same_key():
    params = [
        {"key": "a", "value": "late", "sequence": 20},
        {"key": "a", "value": "early", "sequence": 10},
    ]
    assert unflatten_params(params) == {"a": "late"}


@pytest.mark.parametrize(
    "keys",
    [["a", "a.b"], ["a.b", "a"], ["a.b.c", "a.b"]],
)
def test_a_key_that_is_both_value_and_group_is_rejected(keys):
    params = [{"key": k, "value": "1", "sequence": i} for i, k in enumerate(keys)]
    with pytest.raises(ConnectorConfigError, match="conflicts"):
        unflatten_params(params)


@pytest.mark.parametrize("key", ["", ".a", "a.", "a..b", "a b", "a/b", "ä"])
def test_malformed_keys_are_rejected(key):
    with pytest.raises(ConnectorConfigError, match="invalid parameter key"):
        unflatten_params([{"key": key, "value": "1"}])


def test_flatten_is_the_inverse_of_unflatten():
    config = {"host": "h", "auth": {"mode": "basic", "user": {"name": "n"}}, "port": 587}
    flat = flatten_config(config)
    assert [p["key"] for p in flat] == ["host", "auth.mode", "auth.user.name", "port"]
    assert [p["sequence"] for p in flat] == [10, 20, 30, 40]
    assert unflatten_params(flat) == config
