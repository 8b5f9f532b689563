"""Linear layers' weights in 4 bits for torch's CPU kernel (`weights = "int4"`).

Each decoding step streams every weight once; 4-bit weights stream a quarter of
bfloat16's bytes and an eighth of float32's. The layout is the one torch's
weight-only CPU kernel takes (`_weight_int4pack_mm_for_cpu`): asymmetric groups
of 32 along the input, the activations cast to bfloat16 for the product and
back. The packaged models are 4-bit GGUF files whose Q4_K blocks are groups of
32 with an affine scale, so a group that uses its 16 codes' full range comes
back to the rounding of its scale and offset to bfloat16 (the kernel's table);
weights that are not on such a grid (a merged adapter, the GGUF's
6-bit tensors) are rounded to the nearest of 16 levels. Measured (speed
and answers against the float32 model) in docs/speed.md: on a CPU without
AMX it is slower than float32 and loses F1, so it is a setting, not the default.

The output layer (the greedy loops read its rows) and weights shared with
another parameter stay as they are. `state_dict` gives the dequantized weight
(a state-dict hook), so the weight fingerprint and `save_pretrained` see the
weights the model computes with.
"""

from collections import Counter
from types import MethodType
from typing import Any, Tuple

GROUP = 32


def quantize_int4(weight: Any, group: int = GROUP) -> Tuple[Any, Any]:
    """Asymmetric 4-bit codes for `weight` (out x in), `group` inputs per
    scale: the packed weight and the float32 (scale, zero) table, as the CPU
    kernel takes them (it computes (code - 8) * scale + zero; the table in the
    activations' precision)."""
    import torch

    out, k = weight.shape
    w = weight.detach().float().reshape(out, k // group, group)
    lo, hi = w.amin(-1, keepdim=True), w.amax(-1, keepdim=True)
    scale = ((hi - lo) / 15).clamp(min=1e-12)
    codes = ((w - lo) / scale).round().clamp(0, 15).to(torch.int32).reshape(out, k)
    zero = lo + 8 * scale
    table = torch.stack([scale.squeeze(-1), zero.squeeze(-1)], -1).transpose(0, 1).contiguous()
    return torch._convert_weight_to_int4pack_for_cpu(codes, 2), table


def _int4_forward(self: Any, x: Any) -> Any:
    import torch

    shape = x.shape
    y = torch._weight_int4pack_mm_for_cpu(
        x.reshape(-1, shape[-1]).to(torch.bfloat16), self.int4_weight, self.int4_group, self.int4_table
    )
    y = y.to(x.dtype).reshape(*shape[:-1], y.shape[-1])
    return y if self.bias is None else y + self.bias


def dequantized(module: Any) -> Any:
    """The float32 weight a 4-bit layer computes with (out x in)."""
    import torch

    eye = torch.eye(module.in_features, dtype=torch.bfloat16)
    return torch._weight_int4pack_mm_for_cpu(eye, module.int4_weight, module.int4_group, module.int4_table).t().float()


def _dense_state(module: Any, state_dict: dict, prefix: str, local_metadata: Any) -> None:
    state_dict[prefix + "weight"] = dequantized(module)


def quantize_linear_weights(model: Any, group: int = GROUP) -> int:
    """Replace the weights of `model`'s linear layers on the CPU by 4-bit
    codes (see the module's docstring for which). Returns the number of
    layers quantized."""
    import torch

    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    params = model.named_parameters(remove_duplicate=False)
    owners: Counter = Counter(p.data_ptr() for _, p in params if p.layout == torch.strided)
    count = 0
    with torch.no_grad():
        for module in model.modules():
            if (
                type(module) is not torch.nn.Linear
                or module is output
                or module.weight.device.type != "cpu"
                or module.weight.layout != torch.strided
                or owners[module.weight.data_ptr()] != 1
                or module.in_features % group
                or module.out_features % 16  # (the kernel's packing needs it)
            ):
                continue
            packed, table = quantize_int4(module.weight, group)
            del module.weight
            module.register_parameter("weight", None)
            # bfloat16 activations, so a bfloat16 table.
            module.int4_weight, module.int4_table, module.int4_group = packed, table.to(torch.bfloat16), group
            module.forward = MethodType(_int4_forward, module)
            module.register_state_dict_post_hook(_dense_state)
            count += 1
    return count
