"""Device keys and the replay-protected anti-rollback counter."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from flexserve.errors import ConfigError, SecurityError
from flexserve.tee.sealing import DeviceKeys, RollbackCounter, SecureDevice

MODEL_A = bytes(range(32))
MODEL_B = bytes(range(1, 33))


@pytest.fixture
def keys() -> DeviceKeys:
    return DeviceKeys.generate()


@pytest.fixture
def counter(tmp_path: Path, keys: DeviceKeys) -> RollbackCounter:
    return RollbackCounter(tmp_path / "rpmb", keys)


def test_counter_is_monotonic_and_persistent(counter, keys) -> None:
    assert counter.minimum_version(MODEL_A) == 0
    counter.check(MODEL_A, 0)
    counter.advance(MODEL_A, 3)
    counter.advance(MODEL_A, 2)  # never lowers
    assert counter.minimum_version(MODEL_A) == 3
    counter.check(MODEL_A, 3)
    counter.check(MODEL_A, 4)
    with pytest.raises(SecurityError):
        counter.check(MODEL_A, 2)
    assert counter.minimum_version(MODEL_B) == 0  # one counter per model id
    assert RollbackCounter(counter.root, keys).minimum_version(MODEL_A) == 3


def test_tampered_record_fails_closed(counter) -> None:
    counter.advance(MODEL_A, 5)
    record = counter.root / f"{MODEL_A.hex()}.rpmb"
    for offset in (0, 8, 16, 40):
        raw = bytearray(record.read_bytes())
        raw[offset] ^= 1
        record.write_bytes(bytes(raw))
        with pytest.raises(SecurityError):
            counter.minimum_version(MODEL_A)
        raw[offset] ^= 1
        record.write_bytes(bytes(raw))
    record.write_bytes(record.read_bytes()[:-1])
    with pytest.raises(SecurityError):
        counter.check(MODEL_A, 9)


def test_record_is_bound_to_model_and_device(tmp_path, counter) -> None:
    counter.advance(MODEL_A, 5)
    record = counter.root / f"{MODEL_A.hex()}.rpmb"
    (counter.root / f"{MODEL_B.hex()}.rpmb").write_bytes(record.read_bytes())
    with pytest.raises(SecurityError):
        counter.minimum_version(MODEL_B)
    other = RollbackCounter(tmp_path / "other", DeviceKeys.generate())
    (other.root / record.name).write_bytes(record.read_bytes())
    with pytest.raises(SecurityError):
        other.minimum_version(MODEL_A)


def test_counter_arguments_are_validated(counter) -> None:
    with pytest.raises(ConfigError):
        counter.advance(b"short", 1)
    with pytest.raises(ConfigError):
        counter.advance(MODEL_A, -1)


def test_device_keys_never_show_the_huk(keys) -> None:
    huk = keys._huk
    assert huk.hex() not in repr(keys)
    assert keys.device_id.hex() in repr(keys)
    with pytest.raises(TypeError):
        pickle.dumps(keys)
    assert not hasattr(keys, "__dict__")
    with pytest.raises(ConfigError):
        DeviceKeys(b"\0" * 16)


def test_distinct_devices_have_distinct_ids() -> None:
    assert DeviceKeys.generate().device_id != DeviceKeys.generate().device_id
    assert DeviceKeys(b"\1" * 32).device_id == DeviceKeys(b"\1" * 32).device_id


def test_secure_device_is_provisioned_once(tmp_path) -> None:
    first = SecureDevice.load_or_create(tmp_path / "secure")
    again = SecureDevice.load_or_create(tmp_path / "secure")
    assert first.keys.device_id == again.keys.device_id
    first.rollback.advance(MODEL_A, 2)
    assert again.rollback.minimum_version(MODEL_A) == 2
    assert (tmp_path / "secure" / "otp" / "huk").stat().st_mode & 0o077 == 0
