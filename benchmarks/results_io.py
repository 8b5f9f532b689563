"""Writing benchmark results: one JSON file per benchmark, under benchmarks/results/."""

import json
from pathlib import Path
from typing import Any, Dict

import typer


def write_results(output: Path, results: Dict[str, Any]) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    typer.echo(f"Wrote {output}")
