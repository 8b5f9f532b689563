"""Compare two zero_shot.py runs on the same sentences: the share of docs whose
entities changed, and the F1 differences with a paired bootstrap interval.

    python benchmarks/compare_runs.py benchmarks/results/zero_shot_float32.json \
        benchmarks/results/zero_shot_default_100.json -o benchmarks/results/precision_change.json

The interval resamples sentences (the same resample for both runs) 1000 times
and reports the 2.5th and 97.5th percentiles of the difference in micro F1
over all sets: a difference inside it is within the noise of the sample.
"""

import json
import random
from pathlib import Path
from typing import Any, Dict, List, Tuple

import spacy
import typer
from results_io import write_results

from spacy_recot.evaluation import read_examples


def counts(pred: List[Tuple[int, int, str]], gold: List[Tuple[int, int, str]]) -> Tuple[int, int, int]:
    p, g = set(map(tuple, pred)), set(map(tuple, gold))
    return len(p & g), len(p), len(g)


def f1(rows: List[Tuple[int, int, int]]) -> float:
    tp = sum(r[0] for r in rows)
    pred = sum(r[1] for r in rows)
    gold = sum(r[2] for r in rows)
    return 2 * tp / (pred + gold) if pred + gold else 0.0


def compare(ra: Dict[str, Any], rb: Dict[str, Any], data: Path, samples: int = 1000, seed: int = 0) -> Dict[str, Any]:
    """Two zero_shot.py results on the same sentences: changed docs, micro F1
    of each, and a paired bootstrap interval of the difference (b - a)."""
    nlp = spacy.blank("en")
    per_set: Dict[str, Any] = {}
    rows_a: List[Tuple[int, int, int]] = []
    rows_b: List[Tuple[int, int, int]] = []
    for name, res_a in ra["datasets"].items():
        res_b = rb["datasets"].get(name)
        if res_b is None:
            continue
        pa, pb = res_a["predictions"], res_b["predictions"]
        n = min(len(pa), len(pb))
        golds = [
            [(e.start_char, e.end_char, e.label_) for e in eg.reference.ents]
            for eg in read_examples(nlp, data / name / "test.spacy", limit=n)
        ]
        changed = sum(sorted(map(tuple, x)) != sorted(map(tuple, y)) for x, y in zip(pa[:n], pb[:n]))
        ca = [counts(p, g) for p, g in zip(pa[:n], golds)]
        cb = [counts(p, g) for p, g in zip(pb[:n], golds)]
        rows_a += ca
        rows_b += cb
        per_set[name] = {"docs": n, "changed_docs": changed, "f1_a": f1(ca), "f1_b": f1(cb)}
    rng = random.Random(seed)
    diffs = []
    for _ in range(samples):
        idx = [rng.randrange(len(rows_a)) for _ in rows_a]
        diffs.append(f1([rows_b[i] for i in idx]) - f1([rows_a[i] for i in idx]))
    diffs.sort()
    low, high = (diffs[int(0.025 * samples)], diffs[int(0.975 * samples) - 1]) if diffs else (0.0, 0.0)
    total = sum(v["docs"] for v in per_set.values())
    changed = sum(v["changed_docs"] for v in per_set.values())
    return {
        "docs": total,
        "changed_docs": changed,
        "changed_share": changed / total if total else 0.0,
        "micro_f1_a": f1(rows_a),
        "micro_f1_b": f1(rows_b),
        "micro_f1_difference": f1(rows_b) - f1(rows_a),
        "bootstrap_95_interval_of_difference": [low, high],
        "sets": per_set,
    }


def main(
    a: Path = typer.Argument(..., help="The reference run (JSON from zero_shot.py)"),
    b: Path = typer.Argument(..., help="The run compared with it"),
    data: Path = typer.Option(Path("corpus/gner"), "--data", help="The converted sets both runs used"),
    samples: int = typer.Option(1000, "--samples"),
    output: Path = typer.Option(Path("benchmarks/results/compare_runs.json"), "--output", "-o"),
) -> None:
    ra, rb = (json.loads(p.read_text(encoding="utf-8")) for p in (a, b))
    results = {"a": str(a), "b": str(b), **compare(ra, rb, data, samples)}
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
