"""Historical KV caches belong to one client session: another app with the same prompt
prefix neither reuses them nor can tell from its timing that they exist."""

from __future__ import annotations

from flexserve.soc.constants import MIB
from flexserve.systems.config import FLEXSERVE
from flexserve.systems.device import FrameworkClient
from flexserve.systems.session import DeviceSession
from flexserve.tee.framework import GenerateRequest
from flexserve.tee.sealing import ModelStore, SecureDevice
from flexserve.timing.profile import load_profile

SECRET_TURN = "My bank PIN is 4921 and my mother's maiden name is"


def test_a_conversation_is_not_reused_by_another_session(tmp_path, smollm2_path,
                                                         one_torch_thread) -> None:
    store = ModelStore(tmp_path / "store", SecureDevice.load_or_create(tmp_path / "secure"))
    with DeviceSession(FLEXSERVE, load_profile("rk3588"), store=store,
                       cache_bytes=256 * MIB, dram_bytes=768 * MIB) as session:
        blob = store.ensure_catalog("smollm2-135m").path.name
        victim, attacker = FrameworkClient(session.device), FrameworkClient(session.device)
        for client in (victim, attacker):
            client.open_model(blob)
        request = {"max_tokens": 4, "temperature": 0.0}
        victim.generate(GenerateRequest(SECRET_TURN, raw=True, sampling=request))
        attacker.generate(GenerateRequest(SECRET_TURN + " Smith", raw=True, sampling=request))
        assert session.device.ta.last_trace.reused_prompt_tokens == 0
        victim.generate(GenerateRequest(SECRET_TURN + " Smith", raw=True, sampling=request))
        assert session.device.ta.last_trace.reused_prompt_tokens > 0  # its own history
        for client in (victim, attacker):
            client.close()


def test_a_request_that_keeps_no_kv_neither_reuses_nor_leaves_any(tmp_path, smollm2_path,
                                                                  one_torch_thread) -> None:
    """The server's requests come from unrelated users over one session: keep_kv=False."""
    store = ModelStore(tmp_path / "store", SecureDevice.load_or_create(tmp_path / "secure"))
    with DeviceSession(FLEXSERVE, load_profile("rk3588"), store=store,
                       cache_bytes=256 * MIB, dram_bytes=768 * MIB) as session:
        client = FrameworkClient(session.device)
        client.open_model(store.ensure_catalog("smollm2-135m").path.name)
        request = {"max_tokens": 4, "temperature": 0.0}
        first = client.generate(GenerateRequest(SECRET_TURN, raw=True, sampling=request,
                                                keep_kv=False))
        again = client.generate(GenerateRequest(SECRET_TURN, raw=True, sampling=request,
                                                keep_kv=False))
        assert session.device.ta.last_trace.reused_prompt_tokens == 0
        assert again.text == first.text
        client.generate(GenerateRequest(SECRET_TURN, raw=True, sampling=request))  # kept
        client.generate(GenerateRequest(SECRET_TURN + " Smith", raw=True, sampling=request))
        assert session.device.ta.last_trace.reused_prompt_tokens > 0
        client.close()
