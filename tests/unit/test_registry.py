"""mini_o3.registry against a real local MLflow store (its file registry): versions point at sealed
artifacts with their digest, aliases move, models:/NAME@ALIAS and models:/NAME/VERSION resolve."""

from __future__ import annotations

from pathlib import Path

import pytest

from mini_o3 import registry, storage
from mini_o3.registry import RegistryError


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return (tmp_path / "mlruns").as_uri()


def sealed_model(path: Path, weights: bytes = b"w1") -> str:
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"model_type": "qwen2_5_vl"}')
    (path / "model.safetensors").write_bytes(weights)
    storage.mark_complete(path)
    return str(path)


@pytest.mark.parametrize("ref, parsed", [
    ("models:/mini-o3@candidate", ("mini-o3", "candidate", "")),
    ("models:/mini-o3/12", ("mini-o3", "", "12")),
    (" models:/a_b@champion ", ("a_b", "champion", "")),
])
def test_parse_ref_reads_both_mlflow_forms(ref, parsed):
    assert registry.parse_ref(ref) == parsed


@pytest.mark.parametrize("ref", ["models:/mini-o3", "models:/mini-o3/v1", "models:/@x", "models://m@a",
                                 "models:/m@a/1", "mini-o3@candidate"])
def test_malformed_references_are_named(ref):
    with pytest.raises(RegistryError, match="expected models:/NAME@ALIAS or models:/NAME/VERSION"):
        registry.parse_ref(ref)


@pytest.mark.parametrize("alias", ["latest", "v3", "has space", "", "a/b"])
def test_reserved_or_bad_aliases_are_refused(alias):
    with pytest.raises(RegistryError, match="not a valid MLflow alias"):
        registry.check_alias(alias)


def test_digest_follows_content_not_location(tmp_path):
    a = sealed_model(tmp_path / "a")
    b = sealed_model(tmp_path / "b")
    c = sealed_model(tmp_path / "c", weights=b"w2")
    assert registry.artifact_digest(a) == registry.artifact_digest(b) != registry.artifact_digest(c)
    assert len(registry.artifact_digest(a)) == 16


def test_versions_aliases_and_resolution(store, tmp_path):
    first = sealed_model(tmp_path / "run1" / "rl" / "model")
    second = sealed_model(tmp_path / "run2" / "rl" / "model", weights=b"w2")
    v1 = registry.register_version(tracking_uri=store, name="mini-o3", source_uri=first,
                                   tags={"mini_o3.kfp_run_id": "run1", "api_key": "sk-never"})
    assert (v1.ref, v1.version, v1.alias) == ("models:/mini-o3/1", "1", "candidate")
    assert registry.resolve("models:/mini-o3@candidate", store).uri == first
    v2 = registry.register_version(tracking_uri=store, name="mini-o3", source_uri=second)
    now = registry.resolve("models:/mini-o3@candidate", store)  # resolved when asked: the alias moved
    assert (now.version, now.uri, now.digest, now.alias) == ("2", second, registry.artifact_digest(second), "candidate")
    pinned = registry.resolve("models:/mini-o3/1", store)
    assert (pinned.version, pinned.uri, pinned.alias) == ("1", first, "")
    tags = registry.get_version(store, "mini-o3", version="1").tags
    assert tags["mini_o3.kfp_run_id"] == "run1" and "api_key" not in tags
    assert tags[registry.TAG_DIGEST] == registry.artifact_digest(first) == v1.digest
    assert registry.alias_version(store, "mini-o3", "champion") == ""
    registry.set_alias(store, "mini-o3", "champion", "1")
    assert registry.alias_version(store, "mini-o3", "champion") == "1" and v2.version == "2"


def test_unknown_alias_or_model_is_one_error_naming_it(store, tmp_path):
    registry.register_version(tracking_uri=store, name="mini-o3", source_uri=sealed_model(tmp_path / "m"))
    for ref in ("models:/mini-o3@champion", "models:/mini-o3/7", "models:/other@candidate"):
        with pytest.raises(RegistryError, match=f"{ref} does not resolve in the registry"):
            registry.resolve(ref, store)
    with pytest.raises(RegistryError, match="needs a tracking URI"):
        registry.resolve("models:/mini-o3@candidate", None)


def test_plain_references_resolve_to_themselves(tmp_path):
    model = sealed_model(tmp_path / "m")
    assert registry.resolve(model, None) == registry.ResolvedModel(model, model, registry.artifact_digest(model))
    assert registry.resolve("hf://Mini-o3/Mini-o3-7B-v1", None).digest == ""
    half = tmp_path / "half"
    half.mkdir()
    with pytest.raises(storage.IncompleteArtifactError):
        registry.resolve(str(half), None)


def test_policy_specs_on_registry_models_resolve_to_the_local_folder(store, tmp_path):
    model = sealed_model(tmp_path / "m")
    registry.register_version(tracking_uri=store, name="mini-o3", source_uri=model)
    spec, resolved = registry.resolve_policy("local:models:/mini-o3@candidate", store)
    assert spec == f"local:{model}" and resolved.version == "1"
    spec, resolved = registry.resolve_policy("vllm:models:/mini-o3/1", store)
    assert spec == f"vllm:{model}" and resolved.ref == "models:/mini-o3/1"
    assert registry.resolve_policy("openai:http://127.0.0.1:1/v1#m", store) == ("openai:http://127.0.0.1:1/v1#m", None)
    assert registry.resolve_policy(f"local:{model}", store) == (f"local:{model}", None)
