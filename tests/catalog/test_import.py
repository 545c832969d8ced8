"""``import``: validation, sealing, digest checks, verification, and imported models as
first-class catalog entries (resolve, list, servable, the blob a session opens)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from tiny_gguf import write_servable_gguf

from flexserve.catalog import ModelKind, list_models, resolve
from flexserve.catalog.imported import read_sidecar
from flexserve.catalog.importer import import_model, parse_sha256
from flexserve.catalog.servable import servable_models, stored_model
from flexserve.errors import ConfigError, ModelError, ModelFormatError, SecurityError
from flexserve.tee.sealing.store import ModelStore, model_id_for
from flexserve.tee.sealing.verify import verify_blob

CHUNK_BYTES = 4096


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return write_servable_gguf(tmp_path / "Tiny Model.gguf")


def _sha256(path: Path) -> bytes:
    return hashlib.sha256(path.read_bytes()).digest()


def _store_files(store: ModelStore) -> list[str]:
    return sorted(p.name for p in store.root.iterdir())


def test_import_seals_verifies_and_writes_public_facts(store, source) -> None:
    result = import_model(store, source, "tiny", expected_sha256=_sha256(source),
                          chunk_bytes=CHUNK_BYTES)
    assert result.stored.path == store.root / "tiny.v1.fxsealed"
    assert _store_files(store) == ["tiny.model.json", "tiny.v1.fxsealed"]
    facts = read_sidecar(store.sidecar_path("tiny"))
    assert facts == result.model
    assert (facts.architecture, facts.quantization, facts.n_layers) == ("llama", "Q8_0", 2)
    assert facts.tensor_types == ("F32", "Q8_0") and facts.context_length == 256
    assert facts.source_sha256 == _sha256(source).hex() and facts.version == 1
    assert facts.size_bytes == source.stat().st_size and facts.source_file == source.name
    assert store.minimum_version("tiny") == 1
    # the tokenizer and the weights are not in the sidecar, and the blob holds no plaintext
    sidecar = store.sidecar_path("tiny").read_text()
    assert "tokenizer" not in sidecar and "hello" not in sidecar
    assert b"tokenizer.ggml" not in result.stored.path.read_bytes()


def test_imported_models_are_first_class(store, source) -> None:
    import_model(store, source, "tiny")
    entry = resolve("tiny", store.root)
    assert entry.kind is ModelKind.IMPORTED and entry.has_weights and entry.path is None
    assert entry.n_layers == 2 and entry.params == read_sidecar(store.sidecar_path("tiny")).params
    assert "tiny" in {e.name for e in list_models(store.root)}
    assert servable_models(store.root)[-1] == "tiny"
    source.unlink()  # no source file is needed once imported
    assert stored_model(store, "tiny") == store.latest("tiny")
    model, reader = store.open("tiny")
    with reader:
        assert model.model_id == model_id_for("tiny")


def test_default_name_is_the_file_stem_made_store_safe(store, source) -> None:
    assert import_model(store, source).model.name == "Tiny-Model"


def test_digest_mismatch_imports_nothing(store, source) -> None:
    wrong = bytes(32)
    with pytest.raises(ModelError, match="sha256 mismatch"):
        import_model(store, source, "tiny", expected_sha256=wrong)
    assert _store_files(store) == [] and store.minimum_version("tiny") == 0
    with pytest.raises(ConfigError, match="64 hex"):
        parse_sha256("abc")
    assert parse_sha256("AB" * 32) == b"\xab" * 32


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_or_truncated_files_are_refused_in_one_line(store, source, damage) -> None:
    data = source.read_bytes()
    source.write_bytes({"truncate": data[: len(data) - 1000], "garbage": os.urandom(4096),
                        "empty": b""}[damage])
    with pytest.raises(ModelFormatError, match="cannot import") as info:
        import_model(store, source, "tiny")
    assert "\n" not in str(info.value)
    assert _store_files(store) == []


def test_an_unsupported_architecture_is_refused(store, tmp_path) -> None:
    source = write_servable_gguf(tmp_path / "odd.gguf", arch="mamba")
    with pytest.raises(ModelFormatError, match="not supported"):
        import_model(store, source, "odd")


def test_non_zero_padding_is_refused_before_sealing(store, source) -> None:
    from flexserve.engine.gguf_file import GGUFFile

    with GGUFFile.open(source) as gguf_file:
        first = min(gguf_file.tensors.values(), key=lambda t: t.offset_bytes)
        gap = [t for t in gguf_file.tensors.values()
               if t.offset_bytes > first.offset_bytes + first.n_bytes]
        pad_at = first.offset_bytes + first.n_bytes
    assert gap, "the writer left no gap after the first tensor"
    with source.open("r+b") as handle:
        handle.seek(pad_at)
        handle.write(b"\x01")
    with pytest.raises(ModelFormatError, match="padding"):
        import_model(store, source, "tiny")


@pytest.mark.parametrize("name", ["smollm2-135m", "SmolLM2-135M", "qwen3-8b", "../up",
                                  "x.gguf", ""])
def test_names_may_not_shadow_catalog_names_or_escape(store, source, name) -> None:
    with pytest.raises(ConfigError):
        import_model(store, source, name)
    assert _store_files(store) == []


def test_a_taken_name_needs_update_which_seals_the_next_version(store, source,
                                                                tmp_path) -> None:
    import_model(store, source, "tiny")
    old_blob = store.latest("tiny").path.read_bytes()
    with pytest.raises(ConfigError, match="already in the store"):
        import_model(store, write_servable_gguf(tmp_path / "v2.gguf", seed=1), "tiny")
    result = import_model(store, tmp_path / "v2.gguf", "tiny", update=True)
    assert result.model.version == 2 and store.versions("tiny") == [1, 2]
    assert stored_model(store, "tiny").version == 2
    assert read_sidecar(store.sidecar_path("tiny")).source_sha256 == \
        _sha256(tmp_path / "v2.gguf").hex()
    assert store.latest("tiny").path.read_bytes() != old_blob
    with pytest.raises(SecurityError):  # v1 is below the counter now
        store.open("tiny", 1)


def test_a_file_changed_during_sealing_fails_verification_and_leaves_nothing(
        store, source) -> None:
    """The source is rewritten in place (same size, same mtime) after the first chunk: the
    sealer measured the old bytes, the blob holds new ones, so it cannot verify."""
    stat = source.stat()
    tampered = []

    def tamper(done_bytes: int, total_bytes: int) -> None:
        if not tampered:
            with source.open("r+b") as handle:
                handle.seek(stat.st_size - 64)
                handle.write(bytes(b ^ 0x55 for b in handle.read(1)))
            os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            tampered.append(done_bytes)

    with pytest.raises(ModelError, match="does not decrypt back"):
        import_model(store, source, "tiny", chunk_bytes=CHUNK_BYTES, seal_progress=tamper)
    assert tampered and _store_files(store) == [] and store.minimum_version("tiny") == 0


def test_verify_blob_fails_closed_on_a_wrong_digest_or_a_flipped_byte(store, source) -> None:
    staged = store.stage(source, "tiny", chunk_bytes=CHUNK_BYTES)
    verify_blob(staged.path, store.device, _sha256(source))
    with pytest.raises(SecurityError):
        verify_blob(staged.path, store.device, bytes(32))
    data = bytearray(staged.path.read_bytes())
    data[-100] ^= 1
    staged.path.write_bytes(bytes(data))
    with pytest.raises(SecurityError):
        verify_blob(staged.path, store.device, _sha256(source))
    assert store.versions("tiny") == []  # a staged blob is never a version
    store.discard(staged)
    assert _store_files(store) == []


def test_a_file_path_may_not_take_an_imported_name(store, source, tmp_path) -> None:
    import_model(store, source, "tiny")
    other = write_servable_gguf(tmp_path / "tiny.gguf", seed=3)
    with pytest.raises(ConfigError, match="imported model"):
        stored_model(store, str(other))


def test_a_malformed_sidecar_is_a_clear_error_and_not_servable(store, source) -> None:
    import_model(store, source, "tiny")
    import_model(store, source, "other")
    store.sidecar_path("tiny").write_text('{"format": "flexserve-imported-model/1"}')
    with pytest.raises(ModelError, match="malformed"):
        resolve("tiny", store.root)
    assert servable_models(store.root)[-1:] == ["other"]
    assert "tiny" not in servable_models(store.root)


def test_planted_sidecars_cannot_rename_or_shadow(store, source) -> None:
    """The store is untrusted: a sidecar naming another model, or one under a bundled name,
    is never listed as that model."""
    import_model(store, source, "tiny")
    text = store.sidecar_path("tiny").read_text()
    store.sidecar_path("alias").write_text(text)  # claims to be "tiny"
    with pytest.raises(ModelError, match="names another model"):
        resolve("alias", store.root)
    store.sidecar_path("smollm2-135m").write_text(text.replace('"tiny"', '"smollm2-135m"'))
    assert "alias" not in servable_models(store.root)
    store.sidecar_path("alias").unlink()
    assert servable_models(store.root).count("smollm2-135m") <= 1
    assert [e.name for e in list_models(store.root)].count("smollm2-135m") == 1
