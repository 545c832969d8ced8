"""A device session serves an imported model by name, from its sealed blob alone, and gives
the text the same weights give when served from their file (or as the bundled model)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from tiny_gguf import write_servable_gguf

from flexserve.catalog.importer import import_model
from flexserve.cli import main
from flexserve.engine.sampling import SamplingParams
from flexserve.soc.constants import MIB
from flexserve.systems.config import FLEXSERVE
from flexserve.systems.runner import Prompt
from flexserve.systems.session import DeviceSession
from flexserve.tee.sealing.store import ModelStore
from flexserve.timing.profile import load_profile

GREEDY = SamplingParams(temperature=0.0, max_tokens=6)


def _session(store: ModelStore, dram_mib: int) -> DeviceSession:
    return DeviceSession(FLEXSERVE, load_profile("rk3588"), store=store,
                         dram_bytes=dram_mib * MIB)


def test_a_session_generates_from_an_imported_tiny_model(store, tmp_path: Path) -> None:
    source = write_servable_gguf(tmp_path / "tiny-src.gguf", seed=5)
    import_model(store, source, "tiny")
    prompt = Prompt("hello", raw=True)
    with _session(store, 512) as session:
        from_file = session.generate(str(source), prompt, GREEDY)
        source.unlink()
        imported = session.generate("tiny", prompt, GREEDY)
        assert session.open_blobs()["tiny"] == "tiny.v1.fxsealed"
    assert imported.answer == from_file.answer
    assert imported.answer.completion_tokens == GREEDY.max_tokens
    assert imported.timing.ttft_s > 0


@pytest.mark.slow
def test_the_bundled_smollm2_file_imported_by_the_cli_serves_by_name(
        store, capsys, smollm2_path: Path, one_torch_thread) -> None:
    digest = hashlib.sha256(smollm2_path.read_bytes()).hexdigest()
    assert main(["import", str(smollm2_path), "--name", "my-smol", "--sha256", digest]) == 0
    assert "imported my-smol version 1" in capsys.readouterr().out
    question = Prompt("Name three colors.")
    params = SamplingParams(temperature=0.0, max_tokens=4)
    with _session(store, 1024) as session:
        mine = session.generate("my-smol", question, params)
        bundled = session.generate("smollm2-135m", question, params)
        blobs = session.open_blobs()
    assert blobs == {"my-smol": "my-smol.v1.fxsealed",
                     "smollm2-135m": "smollm2-135m.v1.fxsealed"}
    assert mine.answer == bundled.answer and mine.answer.text.strip()


def test_flexserve_run_serves_an_imported_model_on_secure_systems_only(
        store, tmp_path: Path, capsys) -> None:
    import_model(store, write_servable_gguf(tmp_path / "src.gguf", seed=6), "tiny")
    code = main(["run", "hello", "--raw", "--model", "tiny", "--max-tokens", "3"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "FlexServe" in out and "TTFT" in out
    code = main(["run", "hello", "--raw", "--model", "tiny", "--system", "nw-base"])
    _, err = capsys.readouterr()
    assert code == 2 and "only sealed" in err and err.count("\n") == 1


def test_normal_world_generation_refuses_an_imported_model(store, tmp_path: Path,
                                                           capsys) -> None:
    import_model(store, write_servable_gguf(tmp_path / "src.gguf"), "tiny")
    code = main(["generate", "hello", "--model", "tiny"])
    _, err = capsys.readouterr()
    assert code == 2 and "only sealed for the device" in err
