"""LoRA adapters read without peft, merged at load, stacked, written, refused when wrong."""

import json

import pytest
import spacy
import torch

from spacy_recot.adapters import (
    merge_adapter,
    read_adapter,
    resolve_adapter,
    stack_adapters,
    write_adapter,
)
from spacy_recot.errors import ModelLoadError


def _peft_adapter(model_dir, path, seed: int, r: int = 4, rslora: bool = False):
    """A peft LoRA adapter on every linear layer with random A and B (so it
    changes the model), saved to `path`; returns peft's own merged model."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    config = LoraConfig(
        r=r,
        lora_alpha=2 * r,
        target_modules="all-linear",
        init_lora_weights=False,
        use_rslora=rslora,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(base, config)
    peft_model.save_pretrained(path)
    return peft_model.merge_and_unload()


def _load(model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir)


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.allclose(sa[k], sb[k], atol=1e-6) for k in sa)


@pytest.mark.parametrize("rslora", [False, True])
def test_merge_equals_peft_merge(tiny_qwen3_dir, tmp_path, rslora):
    merged_by_peft = _peft_adapter(tiny_qwen3_dir, tmp_path / "a", seed=0, rslora=rslora)
    model = _load(tiny_qwen3_dir)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    adapter = read_adapter(tmp_path / "a")
    assert merge_adapter(model, adapter) == len(adapter.weights) > 0
    assert _same_weights(model, merged_by_peft)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_stacked_adapter_equals_merging_both(tiny_qwen3_dir, tmp_path):
    _peft_adapter(tiny_qwen3_dir, tmp_path / "a", seed=0, r=4)
    _peft_adapter(tiny_qwen3_dir, tmp_path / "b", seed=1, r=2)
    one_by_one = _load(tiny_qwen3_dir)
    merge_adapter(one_by_one, tmp_path / "a")
    merge_adapter(one_by_one, tmp_path / "b")
    stacked = stack_adapters([read_adapter(tmp_path / "a"), read_adapter(tmp_path / "b")])
    assert stacked.rank == 6
    write_adapter(stacked, tmp_path / "ab", dtype=None)
    at_once = _load(tiny_qwen3_dir)
    merge_adapter(at_once, tmp_path / "ab")
    assert _same_weights(one_by_one, at_once)


def test_written_adapter_loads_in_peft(tiny_qwen3_dir, tmp_path):
    from peft import PeftModel

    merged_by_peft = _peft_adapter(tiny_qwen3_dir, tmp_path / "a", seed=0)
    write_adapter(read_adapter(tmp_path / "a"), tmp_path / "copy", dtype=None)
    reloaded = PeftModel.from_pretrained(_load(tiny_qwen3_dir), tmp_path / "copy").merge_and_unload()
    assert _same_weights(reloaded, merged_by_peft)


def test_backend_merges_at_load_and_pipeline_round_trips(tiny_qwen3_dir, tmp_path):
    merged_by_peft = _peft_adapter(tiny_qwen3_dir, tmp_path / "a", seed=0)
    nlp = spacy.blank("en")
    pipe = nlp.add_pipe(
        "recot_ner",
        config={
            "labels": ["person"],
            "model": {
                "@misc": "spacy_recot.HFCausal.v3",
                "name_or_path": str(tiny_qwen3_dir),
                "adapter": str(tmp_path / "a"),
                "dtype": "float32",
                "max_new_tokens": 8,
            },
        },
    )
    nlp.initialize()
    assert _same_weights(pipe.model.model, merged_by_peft)
    nlp("Barack Obama visited Paris.")
    nlp.to_disk(tmp_path / "pipeline")
    # The saved weights hold the adapter: loading does not merge it twice,
    # and does not need the adapter folder any more.
    (tmp_path / "a" / "adapter_model.safetensors").unlink()
    loaded = spacy.load(tmp_path / "pipeline")
    assert _same_weights(loaded.get_pipe("recot_ner").model.model, merged_by_peft)


@pytest.mark.slow
def test_packaged_pipeline_keeps_a_copy_of_its_adapter(tmp_path):
    """A packaged model's pipeline holds a reference to the packages plus a
    copy of the adapter, and loads with it merged once."""
    from spacy_recot.backends.packaged import materialize

    base = materialize("smollm2-135m-instruct")
    merged_by_peft = _peft_adapter(base, tmp_path / "a", seed=0, r=2)
    config = {
        "labels": ["person"],
        "model": {
            "@misc": "spacy_recot.PackagedCausal.v4",
            "name": "smollm2-135m-instruct",
            "adapter": str(tmp_path / "a"),
            "dtype": "float32",
        },
    }
    nlp = spacy.blank("en")
    nlp.add_pipe("recot_ner", config=config)
    nlp.initialize()
    nlp.to_disk(tmp_path / "pipeline")
    folder = tmp_path / "pipeline" / "recot_ner" / "model"
    assert (folder / "packaged.json").exists() and (folder / "adapter" / "adapter_model.safetensors").exists()
    assert not (folder / "model.safetensors").exists()
    (tmp_path / "a" / "adapter_model.safetensors").unlink()
    loaded = spacy.load(tmp_path / "pipeline")
    assert _same_weights(loaded.get_pipe("recot_ner").model.model, merged_by_peft)


@pytest.mark.slow
def test_a_shipped_adapter_is_cached_merged(tmp_path, monkeypatch):
    """A shipped adapter (the default's) is merged once into the cache: the
    merged copy holds what a merge at load gives, bit for bit, whether made
    from the GGUF or from the plain cached copy; later loads (a pipeline's
    copy of the adapter included) read it and merge nothing more."""
    from safetensors.torch import load_file

    from spacy_recot import adapters
    from spacy_recot.adapters import adapter_digest, shipped_name
    from spacy_recot.backends.packaged import materialize

    name = "smollm2-135m-instruct"
    base = materialize(name)
    _peft_adapter(base, tmp_path / "shipped" / "tiny-sft", seed=0, r=2)
    monkeypatch.setattr(adapters, "SHIPPED_DIR", tmp_path / "shipped")
    adapter = tmp_path / "shipped" / "tiny-sft"
    assert shipped_name(adapter) == "tiny-sft"
    monkeypatch.setenv("SPACY_RECOT_CACHE", str(tmp_path / "cache"))

    by_hand = _load(base)
    merge_adapter(by_hand, adapter)
    expected = by_hand.state_dict()
    # From the GGUF (an empty cache), and from the plain copy of the default cache.
    from_gguf = materialize(name, cache=tmp_path / "cache", adapter=adapter)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / base.name).symlink_to(base, target_is_directory=True)
    from_plain = materialize(name, cache=tmp_path / "plain", adapter=adapter)
    assert from_gguf.name.endswith(f"+adapter-{adapter_digest(adapter)[:12]}")
    assert not (tmp_path / "cache" / base.name).exists()  # the merged copy only
    for folder in (from_gguf, from_plain):
        stored = load_file(str(folder / "model.safetensors"))
        for key, tensor in stored.items():
            assert torch.equal(tensor, expected[key]), key

    config = {"@misc": "spacy_recot.PackagedCausal.v4", "name": name, "adapter": "tiny-sft", "dtype": "float32"}
    nlp = spacy.blank("en")
    nlp.add_pipe("recot_ner", config={"labels": ["person"], "model": config})
    nlp.initialize()
    loaded = nlp.get_pipe("recot_ner").model.model.state_dict()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)
    nlp.to_disk(tmp_path / "pipeline")
    copy = tmp_path / "pipeline" / "recot_ner" / "model" / "adapter"
    assert shipped_name(copy) == "tiny-sft"
    again = spacy.load(tmp_path / "pipeline").get_pipe("recot_ner").model.model.state_dict()
    assert all(torch.equal(again[k], expected[k]) for k in expected)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")) == [from_gguf.name]


def test_bad_adapters_are_refused_with_the_file_named(tiny_qwen3_dir, tmp_path):
    with pytest.raises(ModelLoadError, match="model.adapter"):
        resolve_adapter(tmp_path / "nowhere")
    with pytest.raises(ModelLoadError, match="adapter_config.json"):
        read_adapter(tmp_path)
    _peft_adapter(tiny_qwen3_dir, tmp_path / "a", seed=0)
    config_path = tmp_path / "a" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(ModelLoadError, match="use_dora"):
        read_adapter(tmp_path / "a")
    config_path.write_text(json.dumps(config))
    # An adapter made for a model of other shapes changes nothing and says so.
    from transformers import AutoTokenizer

    from spacy_recot.testing.tiny import tiny_qwen3

    wider = tiny_qwen3(AutoTokenizer.from_pretrained(tiny_qwen3_dir), hidden=96)
    before = {k: v.clone() for k, v in wider.state_dict().items()}
    with pytest.raises(ModelLoadError, match="another model"):
        merge_adapter(wider, tmp_path / "a")
    assert all(torch.equal(before[k], v) for k, v in wider.state_dict().items())
    # A tensor that is not a LoRA weight (no pickle, no code: just refused).
    from safetensors.torch import save_file

    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "adapter_config.json").write_text(json.dumps(config))
    save_file({"base_model.model.lm_head.weight": torch.zeros(2, 2)}, str(tmp_path / "b" / "adapter_model.safetensors"))
    with pytest.raises(ModelLoadError, match="not a LoRA"):
        read_adapter(tmp_path / "b")
