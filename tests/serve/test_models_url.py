"""``flexserve models --url`` against the real server (the shared ``live_server``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from flexserve.cli import main
from flexserve.engine.sampling import SamplingParams
from flexserve.systems.config import FLEXSERVE
from flexserve.systems.runner import Prompt
from flexserve.systems.session import DeviceSession
from flexserve.tee.sealing.store import ModelStore
from flexserve.timing.profile import load_profile

pytestmark = pytest.mark.slow


def _columns(table: str) -> dict[str, dict[str, str]]:
    """Rows by name, cells by header (cells may hold spaces: columns are cut at header starts)."""
    lines = table.splitlines()
    header = lines[0].split()
    starts = [lines[0].index(h) for h in header]
    spans = list(zip(header, starts, [*starts[1:], None], strict=True))

    def cut(line: str) -> dict[str, str]:
        return {h: line[a:b].strip() for h, a, b in spans}

    return {cut(line)["NAME"]: cut(line) for line in lines}


def test_models_url_shows_what_the_live_server_has_loaded(live_server, capsys,
                                                          monkeypatch) -> None:
    monkeypatch.setenv("FLEXSERVE_HOME", str(live_server.home))  # the server's own store
    code = main(["models", "--url", live_server.base_url, "--api-key", live_server.api_key])
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = _columns(out)
    assert list(rows["NAME"])[-3:] == ["STORE", "LOADED", "CACHED"]
    served = rows[live_server.model]
    assert served["LOADED"] == "yes"  # preloaded: an open session on the device
    assert served["STORE"].startswith("v1 ")  # sealed into the server's store
    assert rows["qwen3-8b"]["LOADED"] == rows["qwen3-8b"]["CACHED"] == "-"


def test_models_url_without_the_key_is_refused_in_one_line(live_server, capsys) -> None:
    code = main(["models", "--url", live_server.base_url])
    _, err = capsys.readouterr()
    assert code == 2 and "--api-key" in err and err.count("\n") == 1


def test_a_model_imported_into_the_servers_store_serves_by_name(live_server, capsys,
                                                                monkeypatch, tmp_path) -> None:
    """Import while the server runs: it lists the model, serves it from the sealed blob alone
    (the same text as a local device session), and `rm` takes it out of the listing."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "catalog"))  # the catalog tests' model
    from tiny_gguf import write_servable_gguf

    monkeypatch.setenv("FLEXSERVE_HOME", str(live_server.home))
    source = write_servable_gguf(tmp_path / "served.gguf", seed=9)
    assert main(["import", str(source), "--name", "tiny-served"]) == 0
    source.unlink()
    status, reply = live_server.post_json("/v1/completions", {
        "model": "tiny-served", "prompt": "hello", "max_tokens": 4, "temperature": 0})
    assert status == 200, reply
    with DeviceSession(FLEXSERVE, load_profile("rk3588"), store=ModelStore.default(),
                       dram_bytes=512 << 20) as session:
        local = session.generate("tiny-served", Prompt("hello", raw=True),
                                 SamplingParams(temperature=0.0, max_tokens=4))
    assert reply["choices"][0]["text"] == local.answer.text
    capsys.readouterr()
    assert main(["models", "--url", live_server.base_url, "--api-key",
                 live_server.api_key]) == 0
    rows = _columns(capsys.readouterr().out)
    assert rows["tiny-served"]["KIND"] == "imported" and rows["tiny-served"]["LOADED"] == "yes"
    assert main(["rm", "tiny-served", "--yes"]) == 0
    _, _, body = live_server.request("GET", "/v1/models")
    assert "tiny-served" not in {m["id"] for m in json.loads(body)["data"]}
