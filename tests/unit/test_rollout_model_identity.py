"""``model_identity``: the model name in ``vllm:`` / ``local:`` specs (and so in the config hash)
tells models apart, including another checkpoint written to the same folder."""

from __future__ import annotations

from pathlib import Path

from mini_o3.rollout.model_identity import model_fingerprint, model_identity


def _folder(path: Path, weights: bytes, config: str = '{"a": 1}') -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(config)
    (path / "model.safetensors").write_bytes(weights)
    return path


def test_hub_id_names_itself(tmp_path):
    assert model_identity("Mini-o3/Mini-o3-7B-v1") == "Mini-o3/Mini-o3-7B-v1"
    assert model_identity(tmp_path / "missing") == str(tmp_path / "missing")


def test_folder_is_path_and_content(tmp_path):
    one = _folder(tmp_path / "one", b"x" * 10)
    ident = model_identity(one)
    assert ident == f"{one.resolve()}@{model_fingerprint(one)}" and len(ident.rsplit("@", 1)[1]) == 12
    twin = _folder(tmp_path / "twin", b"x" * 10)
    assert model_fingerprint(twin) == model_fingerprint(one) and model_identity(twin) != ident  # other path
    (one / ".lock").write_text("ignored")
    assert model_identity(one) == ident
    (one / "config.json").write_text('{"a": 2}')
    assert model_identity(one) != ident


def test_large_weights_differ_in_any_sampled_window(tmp_path):
    size = 3 << 20  # hashed by size and three 64 KiB windows
    base = bytearray(size)
    prints = {model_fingerprint(_folder(tmp_path / "base", bytes(base)))}
    for i, offset in enumerate((10, size // 2, size - 10)):
        changed = bytearray(base)
        changed[offset] = 1
        prints.add(model_fingerprint(_folder(tmp_path / f"c{i}", bytes(changed))))
    prints.add(model_fingerprint(_folder(tmp_path / "longer", bytes(base) + b"\0")))
    assert len(prints) == 5
