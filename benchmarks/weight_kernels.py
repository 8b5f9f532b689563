"""What weights below 16 bits would buy on this CPU: one decoding step's linear
layers of a model, timed per kernel and row count (the batch's rows at a
decoding step), side by side in one run, medians of several repeats.

    OMP_NUM_THREADS=1 python benchmarks/weight_kernels.py --model qwen2.5-coder-1.5b-instruct

Kernels (torch's own CPU ops; the weights are random with the model's shapes,
which is all a kernel's speed depends on):
- float32: `F.linear` (the plain loop's and dtype "auto"'s kernel on CPUs
  without bfloat16 arithmetic);
- bfloat16-packed: the oneDNN layout `generation/packed_weights.py` uses;
- int8: weight-only, per-output-channel scales (`torch._weight_int8pack_mm`),
  bfloat16 activations;
- int4: weight-only, groups of 32/128 along the input, the layout
  `torch._convert_weight_to_int4pack_for_cpu` makes (`_weight_int4pack_mm_for_cpu`),
  bfloat16 activations, and (`-float32`) float32 activations and scales, with which the
  kernel's products are those of the dequantized weights to float rounding.
Each also reports the relative error of its output against float32 on the same
inputs (the quantization error, not a quality figure: quality needs answers).
The weight bytes a step streams give the bandwidth a kernel reaches: near the
machine's memory bandwidth it is memory-bound (fewer bits help), far below it
compute-bound (fewer bits do not).
"""

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import typer

app = typer.Typer(add_completion=False)


def _shapes(config: Any) -> List[Tuple[int, int]]:
    """(out, in) of one decoder layer's linear weights."""
    h, i = config.hidden_size, config.intermediate_size
    kv = config.num_key_value_heads * (h // config.num_attention_heads)
    return [(h, h), (kv, h), (kv, h), (h, h), (i, h), (i, h), (h, i)]


def _kernels(weight: Any) -> Dict[str, Tuple[Callable[[Any], Any], int]]:
    """name -> (x -> output, bytes of weight streamed)."""
    import torch

    from spacy_recot.generation.int4_weights import quantize_int4
    from spacy_recot.generation.packed_weights import _packed

    out, k = weight.shape
    kernels: Dict[str, Tuple[Callable[[Any], Any], int]] = {
        "float32": (lambda x: torch.nn.functional.linear(x, weight), out * k * 4)
    }
    packed = _packed(weight.to(torch.bfloat16))
    kernels["bfloat16-packed"] = (
        lambda x: torch.ops.mkldnn._linear_pointwise(x.to(torch.bfloat16), packed, None, "none", [], ""),
        out * k * 2,
    )
    scales = weight.abs().amax(1).clamp(min=1e-8) / 127
    q8 = (weight / scales[:, None]).round().clamp(-127, 127).to(torch.int8)
    kernels["int8"] = (
        lambda x: torch._weight_int8pack_mm(x.to(torch.bfloat16), q8, scales.to(torch.bfloat16)),
        out * k + out * 2,
    )
    for group in (32, 128):
        if k % group == 0:
            q4, sz = quantize_int4(weight, group)
            streamed = out * k // 2 + (k // group) * out * 4
            for name, dtype in (("", torch.bfloat16), ("-float32", torch.float32)):
                # float32 activations and scales: the products of the dequantized
                # weights to float rounding (what a float32 model of the GGUF computes).
                kernels[f"int4-g{group}{name}"] = (
                    lambda x, q4=q4, sz=sz.to(dtype), g=group, dt=dtype: torch._weight_int4pack_mm_for_cpu(
                        x.to(dt), q4, g, sz
                    ),
                    streamed,
                )
    return kernels


@app.command()
def main(
    model: str = typer.Option("qwen2.5-coder-1.5b-instruct", "--model", help="A packaged model (its config's shapes)."),
    rows: List[int] = typer.Option([1, 16, 64], "--rows", help="Rows per product (the batch at a decoding step)."),
    repeats: int = typer.Option(7, "--repeats"),
    output: Path = typer.Option(Path("benchmarks/results/weight_kernels.json"), "--output", "-o"),
) -> None:
    """Time one decoder layer's linear products per kernel and row count."""
    import torch
    from results_io import machine, write_results
    from transformers import AutoConfig

    from spacy_recot.backends.packaged import materialize

    torch.manual_seed(0)
    threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
    torch.set_num_threads(threads)
    config = AutoConfig.from_pretrained(materialize(model))
    weights = [torch.randn(o, i) * 0.02 for o, i in _shapes(config)]
    per_layer = [_kernels(w) for w in weights]
    names = list(per_layer[0])
    results: Dict[str, Any] = {}
    with torch.inference_mode():
        for n in rows:
            xs = [torch.randn(n, w.shape[1]) for w in weights]
            exact = [torch.nn.functional.linear(x, w) for x, w in zip(xs, weights)]
            times: Dict[str, List[float]] = {name: [] for name in names}
            for _ in range(repeats):
                for name in names:  # interleaved: drift hits every kernel alike
                    start = time.perf_counter()
                    for x, kernels in zip(xs, per_layer):
                        kernels[name][0](x)
                    times[name].append(time.perf_counter() - start)
            row = {}
            for name in names:
                seconds = statistics.median(times[name])
                streamed = sum(kernels[name][1] for kernels in per_layer)
                err = max(
                    float((kernels[name][0](x).float() - e).norm() / e.norm())
                    for x, e, kernels in zip(xs, exact, per_layer)
                )
                row[name] = {
                    "ms_per_layer": round(seconds * 1e3, 3),
                    "ms_per_step": round(seconds * 1e3 * config.num_hidden_layers, 1),
                    "speed_vs_float32": None,
                    "weight_gb_per_s": round(streamed / seconds / 1e9, 1),
                    "relative_error": round(err, 5),
                }
            for name in names:
                row[name]["speed_vs_float32"] = round(row["float32"]["ms_per_layer"] / row[name]["ms_per_layer"], 2)
            results[str(n)] = row
            print(n, json.dumps(row), flush=True)
    write_results(
        output,
        {
            **machine(),
            "model": model,
            "layers": config.num_hidden_layers,
            "threads": threads,
            "repeats": repeats,
            "torch": torch.__version__,
            "rows": results,
        },
    )


if __name__ == "__main__":
    app()
