"""Historical KV caches: kept in Flex-Mem, written back encrypted, restored bit-identical."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flexserve.errors import SecurityError
from flexserve.soc.constants import MIB
from flexserve.systems.device import boot_device
from flexserve.tee.framework.kv_store import MIN_REUSE_TOKENS, KvStore, common_prefix
from flexserve.tee.sealing import SecureDevice


@pytest.fixture
def world(tmp_path: Path):
    device = boot_device(tmp_path / "flash", SecureDevice.load_or_create(tmp_path / "secure"),
                         dram_bytes=96 * MIB)
    return device, KvStore(device.ta.services, device.files)


def _kv_bytes(n: int = 3 * 4096 + 100, seed: int = 5) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size=n, dtype=np.uint8).tobytes()


def test_prefix_matching_is_exact_and_worth_it(world) -> None:
    _, kv = world
    tokens = list(range(100, 140))
    kv.save("m", tokens, _kv_bytes())
    assert kv.match("m", [*tokens, 1, 2]) == (kv.entries["m"], len(tokens))
    assert kv.match("m", tokens)[1] == len(tokens) - 1  # one token is always computed
    assert kv.match("m", tokens[:20] + [0] * 30)[1] == 20  # longest common prefix only
    assert kv.match("m", tokens[:MIN_REUSE_TOKENS - 1] + [0] * 30) is None
    assert kv.match("other", [*tokens, 1]) is None
    assert common_prefix([1, 2, 3], [1, 2, 4, 5]) == 2


def test_written_back_kv_is_ciphertext_and_comes_back_bit_identical(world) -> None:
    device, kv = world
    data = _kv_bytes()
    entry = kv.save("m", list(range(50)), data)
    frames = entry.allocation.frames.copy()
    lent = device.manager.lent_pages()
    pages = kv.write_back(entry)
    device.manager.rsmem_free(device.owner, pages)  # what the manager does after a reclaim
    assert device.manager.lent_pages() == lent - frames.size
    assert device.platform.soc.memory.frames_are_zero(frames)
    on_flash = device.platform.normal.storage.read_file(entry.flash_name)
    assert len(on_flash) == len(data) + 16 and data[:64] not in on_flash
    name = entry.flash_name
    owned = device.platform.secure.port.owned_frames(device.owner).size
    assert kv.take(entry) == data
    assert "m" not in kv.entries and not device.platform.normal.storage.exists(name)
    assert device.platform.secure.port.owned_frames(device.owner).size == owned
    assert kv.bytes_written_back == kv.bytes_restored == len(data) + 16


@pytest.mark.parametrize("attack", ["flip", "truncate", "swap"])
def test_tampered_write_back_fails_closed(world, attack: str) -> None:
    device, kv = world
    entry = kv.save("m", list(range(50)), _kv_bytes())
    device.manager.rsmem_free(device.owner, kv.write_back(entry))
    storage = device.platform.normal.storage
    blob = bytearray(storage.read_file(entry.flash_name))
    if attack == "flip":
        blob[len(blob) // 2] ^= 1
    elif attack == "truncate":
        del blob[-20:]
    else:  # another entry's ciphertext (same size) swapped in
        other = kv.save("n", list(range(50)), _kv_bytes(seed=9))
        device.manager.rsmem_free(device.owner, kv.write_back(other))
        blob = bytearray(storage.read_file(other.flash_name))
    storage.write_file(entry.flash_name, bytes(blob))
    owned = device.platform.secure.port.owned_frames(device.owner).size
    with pytest.raises(SecurityError):
        kv.take(entry)
    assert "m" not in kv.entries  # the untrusted copy is forgotten
    assert device.platform.secure.port.owned_frames(device.owner).size == owned
