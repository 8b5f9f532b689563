"""Writing benchmark results: one JSON file per benchmark, under benchmarks/results/."""

import json
import platform
from pathlib import Path
from typing import Any, Dict

import torch
import typer

from spacy_recot.backends import cpu_has_bf16, cpu_has_fp16


def machine() -> Dict[str, Any]:
    """What a result depends on besides the code: the platform and the CPU's
    half-precision features ("auto" picks the precision from them)."""
    return {
        "machine": platform.platform(),
        "cpu_bf16": bool(torch.cpu._is_avx512_bf16_supported()),
        "cpu_fp16": cpu_has_fp16(),
        "cpu_amx": bool(torch.cpu._is_amx_tile_supported()),
        "cpu_native_bf16": cpu_has_bf16(),
    }


def write_results(output: Path, results: Dict[str, Any]) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    typer.echo(f"Wrote {output}")
