"""``flexserve rm``: every sealed version and the sidecar go; counters stay where they are."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from tiny_gguf import write_servable_gguf

from flexserve.catalog.importer import import_model
from flexserve.cli import main
from flexserve.errors import SecurityError
from flexserve.tee.sealing.store import ModelStore


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def imported(store: ModelStore, tmp_path: Path) -> ModelStore:
    source = write_servable_gguf(tmp_path / "tiny.gguf")
    import_model(store, source, "tiny")
    import_model(store, source, "tiny", update=True)
    return store


def _terminal(monkeypatch, answer: str) -> list[str]:
    asked: list[str] = []
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr("builtins.input", lambda q: asked.append(q) or answer)
    return asked


def test_rm_yes_removes_all_versions_and_the_sidecar(imported, capsys) -> None:
    code, out, _ = _cli(capsys, "rm", "tiny", "--yes")
    assert code == 0
    assert list(imported.root.iterdir()) == []
    assert out.count("removed ") == 3 and "stays at 2" in out
    code, _, err = _cli(capsys, "models", "show", "tiny")
    assert code == 2 and "unknown model 'tiny'" in err


def test_rm_without_yes_needs_a_terminal(imported, capsys, monkeypatch) -> None:
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    code, _, err = _cli(capsys, "rm", "tiny")
    assert code == 2 and "--yes" in err
    assert imported.versions("tiny") == [1, 2]


def test_rm_asks_on_a_terminal_and_no_keeps_everything(imported, capsys, monkeypatch) -> None:
    asked = _terminal(monkeypatch, "n")
    code, out, _ = _cli(capsys, "rm", "tiny")
    assert code == 1 and "nothing removed" in out
    assert "2 sealed version(s)" in asked[0] and "sidecar" in asked[0]
    assert imported.versions("tiny") == [1, 2] and imported.sidecar_path("tiny").exists()
    _terminal(monkeypatch, "yes")
    assert _cli(capsys, "rm", "tiny")[0] == 0
    assert imported.versions("tiny") == []


def test_rm_refuses_shape_only_and_unknown_names(store, capsys) -> None:
    code, _, err = _cli(capsys, "rm", "qwen3-8b", "--yes")
    assert code == 2 and "shape-only" in err
    code, _, err = _cli(capsys, "rm", "never-imported", "--yes")
    assert code == 2 and "nothing named" in err


def test_removing_a_bundled_models_sealed_copy_is_allowed(store, capsys,
                                                         smollm2_path: Path) -> None:
    store.seal(smollm2_path, "smollm2-135m")
    assert _cli(capsys, "rm", "smollm2-135m", "--yes")[0] == 0
    assert store.versions("smollm2-135m") == []
    again = store.ensure_catalog("smollm2-135m")  # re-sealed on next use, at the counter
    assert again.version == store.minimum_version("smollm2-135m") == 1 and again.path.is_file()


def test_a_removed_version_never_installs_again(imported, tmp_path, capsys) -> None:
    """Keep a copy of v2, remove the model, import again: v3; the old copy is refused."""
    kept = imported.latest("tiny").path.read_bytes()
    assert _cli(capsys, "rm", "tiny", "--yes")[0] == 0
    assert imported.minimum_version("tiny") == 2  # not lowered
    result = import_model(imported, write_servable_gguf(tmp_path / "new.gguf", seed=2), "tiny")
    assert result.model.version == 3
    imported.open("tiny")[1].close()  # installs v3
    imported.blob_path("tiny", 2).write_bytes(kept)  # the attacker puts v2 back
    with pytest.raises(SecurityError):
        imported.open("tiny", 2)
