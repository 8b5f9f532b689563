"""4-bit linear layers (`weights = "int4"`): codes, outputs, state, the setting."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from spacy_recot.backends import HFCausalBackend
from spacy_recot.generation.int4_weights import dequantized, quantize_int4, quantize_linear_weights


def _load(path):
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def _layer(weight):
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    layer.weight.data = weight
    return layer


def test_weights_on_a_4_bit_grid_come_back_exactly():
    # As the GGUF's Q4_K blocks: 32 inputs with an affine scale, all 16 codes used
    # (scales bfloat16 holds exactly, as the kernel's table is bfloat16).
    torch.manual_seed(0)
    codes = torch.stack([torch.randperm(32) % 16 for _ in range(16 * 4)]).reshape(16, 128).float()
    scale = (2.0 ** -torch.randint(4, 8, (16, 4, 1))).float()
    lo = -8 * scale
    weight = (lo + codes.reshape(16, 4, 32) * scale).reshape(16, 128)
    layer = _layer(weight.clone())
    assert quantize_linear_weights(torch.nn.Sequential(layer)) == 1
    assert layer.weight is None
    assert torch.equal(dequantized(layer), weight)
    x = torch.randn(3, 128)
    expected = x.to(torch.bfloat16).float() @ weight.t()
    assert torch.allclose(layer(x), expected, rtol=1e-2, atol=1e-2)


def test_codes_round_off_weights_to_16_levels_per_group():
    torch.manual_seed(1)
    weight = torch.randn(16, 64)
    packed, table = quantize_int4(weight)
    assert table.shape == (2, 16, 2) and table.dtype == torch.float32
    layer = _layer(weight.clone())
    quantize_linear_weights(torch.nn.Sequential(layer))
    # The layer's table is bfloat16, as its bfloat16 activations need.
    assert layer.int4_table.dtype == torch.bfloat16
    error = (dequantized(layer) - weight).abs()
    # Half a step of a group's (max - min) / 15, plus bfloat16's rounding of the table.
    step = (weight.reshape(16, 2, 32).amax(-1) - weight.reshape(16, 2, 32).amin(-1)) / 15
    assert (error.reshape(16, 2, 32) <= step[..., None] * 0.5 + 0.05).all()
    assert error.max() > 0


def test_model_outputs_stay_close_and_state_holds_the_weights_it_uses(tiny_qwen3_dir):
    plain, model = _load(tiny_qwen3_dir), _load(tiny_qwen3_dir)
    linear = [m for m in model.modules() if type(m) is torch.nn.Linear]
    # Every linear layer but the output layer (tied to the embedding).
    assert quantize_linear_weights(model) == len(linear) - 1 > 0
    assert model.lm_head.weight is not None
    ids = torch.randint(0, plain.config.vocab_size, (2, 9))
    with torch.inference_mode():
        got, expected = model(input_ids=ids).logits, plain(input_ids=ids).logits
        kwargs = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0}
        assert model.generate(ids, **kwargs).shape == (2, 15)
    assert (got - expected).norm() / expected.norm() < 0.2
    state, names = model.state_dict(), set(plain.state_dict())
    assert set(state) == names
    q_proj = model.model.layers[0].self_attn.q_proj
    assert torch.equal(state["model.layers.0.self_attn.q_proj.weight"], dequantized(q_proj))


def test_backend_setting_quantizes_on_load(tiny_qwen3_dir, tmp_path):
    settings = {"dtype": "float32", "generation": {"max_new_tokens": 8}}
    backend = HFCausalBackend(str(tiny_qwen3_dir), weights="int4", **settings)
    backend.load()
    assert backend.model.model.layers[0].mlp.up_proj.weight is None
    plain = HFCausalBackend(str(tiny_qwen3_dir), **settings)
    plain.load()
    # Other weights, another fingerprint (the answer cache keeps them apart).
    assert backend.fingerprint() != plain.fingerprint()
    assert "weights" in type(backend.settings).IDENTITY
    # Saved dequantized, quantized again when loaded with the setting.
    backend.to_disk(tmp_path / "saved")
    again = HFCausalBackend(str(tmp_path / "saved"), weights="int4", **settings)
    again.from_disk(tmp_path / "saved")
    assert again.model.model.layers[0].mlp.up_proj.weight is None


def test_unknown_weights_setting_is_refused(tiny_qwen3_dir):
    with pytest.raises(ValueError, match="model.weights"):
        HFCausalBackend(str(tiny_qwen3_dir), weights="int3")
