"""Grouped-query attention on a CPU with `enable_gqa`: the same outputs as transformers' sdpa."""

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from spacy_recot.backends import HFCausalBackend
from spacy_recot.generation.gqa_attention import NAME, use_gqa_attention


def _load(path, dtype=torch.float32, **kwargs):
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs).eval()


def _prompt_then_guesses(model, ids, mask, width):
    """Hidden states of a left-padded prompt pass and of one step over `width`
    fed tokens, one of them masked out (how the greedy loop feeds guesses)."""
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    prompt = ids.shape[1] - width
    with torch.inference_mode():
        out = model.model(
            input_ids=ids[:, :prompt],
            attention_mask=mask[:, :prompt],
            position_ids=positions[:, :prompt],
            use_cache=True,
        )
        step = model.model(
            input_ids=ids[:, prompt:],
            attention_mask=mask,
            position_ids=positions[:, prompt:],
            past_key_values=out.past_key_values,
            use_cache=True,
        )
    return out.last_hidden_state, step.last_hidden_state


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_switched_model_gives_the_same_outputs(tiny_qwen3_dir, dtype):
    plain, switched = _load(tiny_qwen3_dir, dtype), _load(tiny_qwen3_dir, dtype)
    assert plain.config.num_key_value_heads < plain.config.num_attention_heads
    assert use_gqa_attention(switched)
    assert switched.config._attn_implementation == NAME
    torch.manual_seed(0)
    ids = torch.randint(0, plain.config.vocab_size, (4, 20))
    mask = torch.ones_like(ids)
    mask[:2, :5] = 0  # left padding
    mask[1, -2] = 0  # a guess masked out
    for a, b in zip(_prompt_then_guesses(plain, ids, mask, 3), _prompt_then_guesses(switched, ids, mask, 3)):
        assert torch.equal(a, b)
    kwargs = {"max_new_tokens": 10, "do_sample": False, "pad_token_id": 0}
    with torch.inference_mode():
        assert torch.equal(
            plain.generate(ids[:, :12], attention_mask=mask[:, :12], **kwargs),
            switched.generate(ids[:, :12], attention_mask=mask[:, :12], **kwargs),
        )


def test_only_grouped_query_sdpa_models_are_switched(tiny_qwen3_dir):
    assert not use_gqa_attention(_load(tiny_qwen3_dir, attn_implementation="eager"))
    config = AutoConfig.from_pretrained(tiny_qwen3_dir, num_key_value_heads=4)
    assert config.num_attention_heads == 4
    assert not use_gqa_attention(AutoModelForCausalLM.from_config(config, attn_implementation="sdpa"))


def test_backend_switches_on_load_and_saves_a_plain_config(tiny_qwen3_dir, tmp_path):
    backend = HFCausalBackend(str(tiny_qwen3_dir), dtype="float32", generation={"max_new_tokens": 8})
    backend.load()
    assert backend.model.config._attn_implementation == NAME
    backend.to_disk(tmp_path / "saved")
    # Not written into the folder: it loads anywhere with transformers' own sdpa.
    assert NAME not in (tmp_path / "saved" / "config.json").read_text()
    assert _load(tmp_path / "saved").config._attn_implementation == "sdpa"
