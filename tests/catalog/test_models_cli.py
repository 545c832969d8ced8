"""``flexserve models``: the STORE column, ``models show``, and ``models --url`` against a real
HTTP endpoint (a static /v1/models document served by http.server in a thread)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tiny_gguf import write_servable_gguf

from flexserve.catalog.importer import import_model
from flexserve.cli import main

MODELS_REPLY = {"object": "list", "data": [
    {"id": "tiny", "object": "model", "owned_by": "flexserve",
     "flexserve": {"loaded": True, "resident_bytes": 3 << 20, "sealed": True}},
    {"id": "smollm2-135m", "object": "model", "owned_by": "flexserve",
     "flexserve": {"loaded": False, "resident_bytes": 0, "sealed": False}},
    {"id": "elsewhere", "object": "model", "owned_by": "flexserve",
     "flexserve": {"loaded": False, "resident_bytes": 0, "sealed": True}},
]}
API_KEY = "k-test"


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _rows(out: str) -> dict[str, list[str]]:
    """Rows by name (cells may hold spaces: columns are cut where the header's names start)."""
    lines = out.splitlines()
    starts = [lines[0].index(h) for h in lines[0].split()]
    spans = list(zip(starts, [*starts[1:], None], strict=True))

    def cells(line: str) -> list[str]:
        return [line[a:b].strip() for a, b in spans]

    return {cells(line)[0]: cells(line) for line in lines} | {"HEADER": lines[0].split()}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {API_KEY}":
            self._send(401, {"error": {"message": "bad key"}})
        elif self.path == "/v1/models":
            self._send(200, MODELS_REPLY)
        else:
            self._send(404, {"error": {"message": "no"}})

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def tiny(store, tmp_path: Path):
    return import_model(store, write_servable_gguf(tmp_path / "tiny.gguf"), "tiny")


def test_models_lists_imported_models_with_their_store_versions(tiny, capsys) -> None:
    code, out, _ = _cli(capsys, "models")
    rows = _rows(out)
    assert code == 0 and rows["HEADER"][-1] == "STORE"
    assert rows["tiny"][5] == "imported" and rows["tiny"][6].startswith("v1 ")
    assert rows["tiny"][3] == "Q8_0" and rows["tiny"][1] == "llama"
    assert rows["qwen3-8b"][6] == "-"


def test_models_show_prints_kind_facts_and_store_paths(tiny, capsys) -> None:
    code, out, _ = _cli(capsys, "models", "show", "tiny")
    facts = dict(line.split(None, 1) if "  " not in line else
                 [part.strip() for part in line.split("  ", 1)] for line in out.splitlines())
    assert code == 0
    assert facts["kind"] == "imported" and facts["layers"] == "2"
    assert facts["context"] == "256 tokens" and facts["quantization"] == "Q8_0"
    assert facts["source sha256"] == tiny.model.source_sha256
    assert facts["store v1"].startswith(str(tiny.stored.path))


def test_models_show_a_bundled_and_a_shape_only_model(store, capsys, smollm2_path) -> None:
    code, out, _ = _cli(capsys, "models", "show", "smollm2-135m")
    assert code == 0 and "bundled" in out and "8192 tokens" in out and "not sealed yet" in out
    code, out, _ = _cli(capsys, "models", "show", "qwen3-8b")
    assert code == 0 and "shape-only" in out and "store" not in out


def test_models_url_adds_loaded_and_cached_from_the_server(tiny, capsys, server_url) -> None:
    code, out, err = _cli(capsys, "models", "--url", server_url, "--api-key", API_KEY)
    assert code == 0, err
    rows = _rows(out)
    assert rows["HEADER"][-2:] == ["LOADED", "CACHED"]
    assert rows["tiny"][-2:] == ["yes", "3.00 MiB"]
    assert rows["smollm2-135m"][-2:] == ["no", "-"]
    assert rows["qwen3-8b"][-2:] == ["-", "-"]
    assert rows["elsewhere"][5] == "server only"


def test_models_url_errors_are_one_line(store, capsys, server_url) -> None:
    code, _, err = _cli(capsys, "models", "--url", server_url, "--api-key", "wrong")
    assert code == 2 and "--api-key" in err and "Traceback" not in err
    code, _, err = _cli(capsys, "models", "--url", server_url + "/nothing-here",
                        "--api-key", API_KEY)
    assert code == 2 and "HTTP 404" in err
    code, _, err = _cli(capsys, "models", "--url", "http://127.0.0.1:9")
    assert code == 2 and "cannot reach the server" in err
    assert err.count("\n") == 1
