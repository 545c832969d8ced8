"""``flexserve models --url`` against the real server (the shared ``live_server``)."""

from __future__ import annotations

import pytest

from flexserve.cli import main

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
