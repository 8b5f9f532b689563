"""Grouped-query attention on a CPU: transformers' sdpa (key-value heads repeated
when a mask and several query positions meet, as in a step that checks guessed
tokens) against `enable_gqa` (spacy_recot/gqa_attention.py), side by side.

1. The attention kernel alone, at the default model's shapes (Qwen2.5-Coder-1.5B:
   12 query heads, 2 key-value heads, head size 128), 16 rows, 2 query
   positions, a cache of 400 with left padding; medians of --repeats.
2. One decoding step of the packaged default model (16 rows x 2 fed tokens, the
   cache of a 400-token prompt), with "sdpa" and with "recot_sdpa", interleaved,
   medians of --steps; and whether the hidden states are the same bit for bit.

    OMP_NUM_THREADS=1 python benchmarks/attention.py -o benchmarks/results/attention.json
"""

import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Dict

import torch
import typer
from results_io import write_results

from spacy_recot.backends import resolve_dtype
from spacy_recot.backends.packaged import DEFAULT_PACKAGED, materialize
from spacy_recot.generation.gqa_attention import NAME, use_gqa_attention
from spacy_recot.generation.packed_weights import pack_linear_weights


def median_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def kernel(dtype: Any, repeats: int, rows: int = 16, heads: int = 12, kv_heads: int = 2) -> Dict[str, Any]:
    from transformers.integrations.sdpa_attention import repeat_kv

    torch.manual_seed(0)
    query = torch.randn(rows, heads, 2, 128).to(dtype)
    key, value = (torch.randn(rows, kv_heads, 400, 128).to(dtype) for _ in range(2))
    mask = torch.ones(rows, 1, 2, 400, dtype=torch.bool)
    mask[: rows // 2, ..., :40] = False  # left padding
    attend = torch.nn.functional.scaled_dot_product_attention

    def repeated() -> Any:
        groups = heads // kv_heads
        return attend(query, repeat_kv(key, groups), repeat_kv(value, groups), attn_mask=mask)

    def grouped() -> Any:
        return attend(query, key, value, attn_mask=mask, enable_gqa=True)

    with torch.inference_mode():
        return {
            "repeat_kv_ms": median_ms(repeated, repeats),
            "enable_gqa_ms": median_ms(grouped, repeats),
            "equal": torch.equal(repeated(), grouped()),
        }


def step(steps: int) -> Dict[str, Any]:
    from transformers import AutoModelForCausalLM

    dtype = resolve_dtype("auto", "cpu")
    model = AutoModelForCausalLM.from_pretrained(materialize(DEFAULT_PACKAGED), dtype=dtype).eval()
    pack_linear_weights(model)
    rows, prompt, width = 16, 400, 2
    torch.manual_seed(0)
    ids = torch.randint(0, 1000, (rows, prompt + width))
    mask = torch.ones_like(ids)
    mask[: rows // 2, :40] = 0
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        cache = model.model(
            input_ids=ids[:, :prompt],
            attention_mask=mask[:, :prompt],
            position_ids=positions[:, :prompt],
            use_cache=True,
        ).past_key_values

    def one_step() -> Any:
        out = model.model(
            input_ids=ids[:, prompt:],
            attention_mask=mask,
            position_ids=positions[:, prompt:],
            past_key_values=cache,
            use_cache=True,
        )
        cache.crop(-width)
        return out.last_hidden_state

    times: Dict[str, list] = {"sdpa": [], NAME: []}
    hidden: Dict[str, Any] = {}
    with torch.inference_mode():
        for _ in range(steps):
            for name in times:
                if name == NAME:
                    use_gqa_attention(model)
                else:
                    model.set_attn_implementation("sdpa")
                start = time.perf_counter()
                hidden[name] = one_step()
                times[name].append(time.perf_counter() - start)
    result = {f"{name}_ms": 1000 * statistics.median(ts[1:]) for name, ts in times.items()}
    result.update(
        {
            "model": DEFAULT_PACKAGED,
            "dtype": str(dtype),
            "rows": rows,
            "fed_tokens_per_row": width,
            "cache": prompt,
            "equal": torch.equal(hidden["sdpa"], hidden[NAME]),
            "speedup": result["sdpa_ms"] / result[f"{NAME}_ms"],
        }
    )
    return result


def main(
    output: Path = typer.Option(Path("benchmarks/results/attention.json"), "--output", "-o"),
    repeats: int = typer.Option(20, help="Kernel timings per variant"),
    steps: int = typer.Option(6, help="Decoding steps per variant (the first is not counted)"),
) -> None:
    torch.set_num_threads(1)
    results: Dict[str, Any] = {"machine": platform.platform(), "threads": 1}
    results["kernel"] = {str(d): kernel(d, repeats) for d in (torch.float16, torch.bfloat16, torch.float32)}
    results["step"] = step(steps)
    for name, entry in results["kernel"].items():
        typer.echo(f"{name}: repeat_kv {entry['repeat_kv_ms']:.2f} ms, enable_gqa {entry['enable_gqa_ms']:.2f} ms")
    typer.echo(f"step: {results['step']}")
    write_results(output, results)


if __name__ == "__main__":
    typer.run(main)
