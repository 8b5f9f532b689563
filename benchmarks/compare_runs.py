"""Compare two zero_shot.py runs on the same sentences: the share of docs whose
entities changed, and the F1 differences with a paired bootstrap interval.

    python benchmarks/compare_runs.py benchmarks/results/zero_shot_float32.json \
        benchmarks/results/zero_shot_default_100.json -o benchmarks/results/precision_change.json

The interval resamples sentences (the same resample for both runs) 1000 times
and reports the 2.5th and 97.5th percentiles of the difference in micro F1
over all sets: a difference inside it is within the noise of the sample
(`spacy_recot.evaluation.compare_runs`, which training/protocol.py uses too).
"""

import json
from pathlib import Path

import typer
from results_io import write_results

from spacy_recot.evaluation import compare_runs


def main(
    a: Path = typer.Argument(..., help="The reference run (JSON from zero_shot.py)"),
    b: Path = typer.Argument(..., help="The run compared with it"),
    data: Path = typer.Option(Path("corpus/gner"), "--data", help="The converted sets both runs used"),
    samples: int = typer.Option(1000, "--samples"),
    output: Path = typer.Option(Path("benchmarks/results/compare_runs.json"), "--output", "-o"),
) -> None:
    ra, rb = (json.loads(p.read_text(encoding="utf-8")) for p in (a, b))
    results = {"a": str(a), "b": str(b), **compare_runs(ra, rb, data, samples)}
    for name, res in results["sets"].items():
        typer.echo(
            f"{name:<22} changed {res['changed_docs']:>3}/{res['docs']}  F1 {res['f1_a']:.3f} -> {res['f1_b']:.3f}"
        )
    low, high = results["bootstrap_95_interval_of_difference"]
    typer.echo(
        f"all: changed {results['changed_docs']}/{results['docs']}  micro F1 {results['micro_f1_a']:.3f} -> "
        f"{results['micro_f1_b']:.3f}  difference 95% interval [{low:+.3f}, {high:+.3f}]"
    )
    write_results(output, results)


if __name__ == "__main__":
    typer.run(main)
