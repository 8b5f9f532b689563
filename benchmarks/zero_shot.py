"""Zero-shot quality and speed of a component configuration on the GNER test sets.

Runs `recot_ner` with the given settings over the first N sentences of each
converted set (corpus/gner/<set>/test.spacy, made by `spacy project run
convert`) and writes JSON: per set spaCy's exact P/R/F and the papers'
normalized F1, the share of answers the parser could not read, schema
violations (entities with a label not offered, strings not in the text), the
parser's counts, generated tokens/s, sentences/s; and the process's peak memory.

    python benchmarks/zero_shot.py corpus/gner --config benchmarks/configs/default.json \
        --n 15 --output benchmarks/results/zero_shot_default.json

A config file holds component settings as JSON (merged over the factory's
defaults), e.g. {"model": {"@misc": "spacy_recot.PackagedCausal.v1", "constrained": false}}.
Run one configuration per process: peak memory is the process's.
"""

import json
import resource
import time
from pathlib import Path
from typing import Any, Dict, List

import spacy
import torch
import typer
from results_io import machine, write_results

from spacy_recot.conll import read_labels
from spacy_recot.evaluation import evaluate_dataset, read_examples
from spacy_recot.metrics import average_f


def main(
    data: Path = typer.Argument(..., help="Folder of converted sets: <set>/test.spacy"),
    config: Path = typer.Option(None, "--config", "-c", help="JSON file of component settings"),
    n: int = typer.Option(15, "--n", help="Sentences per set (the first N)"),
    batch_size: int = typer.Option(4, "--batch-size"),
    threads: int = typer.Option(2, "--threads", help="torch threads"),
    sets: List[str] = typer.Option([], "--set", help="Only these sets (default: all)"),
    output: Path = typer.Option(Path("benchmarks/results/zero_shot.json"), "--output", "-o"),
    describe_labels: bool = typer.Option(
        False, "--describe-labels", help="Have the model define each set's labels first (kept in the results)"
    ),
) -> None:
    torch.set_num_threads(threads)
    settings: Dict[str, Any] = json.loads(config.read_text(encoding="utf-8")) if config else {}
    paths = sorted(p for p in data.glob("*/test.spacy") if not sets or p.parent.name in sets)
    if not paths:
        raise typer.BadParameter(f"no */test.spacy below {data}; run `spacy project run convert` first")
    nlp = spacy.blank("en")
    pipe = nlp.add_pipe("recot_ner", config={"labels": ["placeholder"], **settings})
    start = time.perf_counter()
    nlp.initialize()
    load_seconds = time.perf_counter() - start
    results: Dict[str, Any] = {
        **machine(),
        # The precision the model runs in ("auto" resolves it from the CPU's features).
        "dtype": str(getattr(getattr(pipe.model, "model", None), "dtype", None)),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "settings": settings,
        "n": n,
        "batch_size": batch_size,
        "threads": threads,
        "load_seconds": load_seconds,
        "datasets": {},
    }
    stats = getattr(pipe.model, "stats", None)
    for path in paths:
        labels = read_labels(path)
        examples = read_examples(nlp, path, limit=n)
        if describe_labels:
            # Each set's own: a definition is written among the set's other labels.
            pipe.labels, pipe.label_descriptions = labels, None
            descriptions = pipe.describe_labels()
        before = dict(stats or {})
        res = evaluate_dataset(nlp, examples, "recot_ner", labels, batch_size=batch_size)
        if describe_labels:
            res["label_descriptions"] = descriptions
            res["description_counts"] = dict(pipe.description_counts)
        generated = (stats or {}).get("generated_tokens", 0) - before.get("generated_tokens", 0)
        prompts = len(examples)  # the test sentences are short: one prompt each
        res["parse_failure_rate"] = res["counts"].get("unparseable", 0) / max(prompts, 1)
        # Schema violations, per entity written: a label not offered, a string not in the text.
        res["schema_violations"] = {k: res["counts"].get(k, 0) for k in ("unknown_label", "not_found")}
        res["generated_tokens"] = generated
        res["tokens_per_second"] = generated / res["seconds"] if res["seconds"] else 0.0
        res["sentences_per_second"] = len(examples) / res["seconds"] if res["seconds"] else 0.0
        # Each doc's entities, to compare two runs answer by answer (compare_runs.py).
        res["predictions"] = [[[e.start_char, e.end_char, e.label_] for e in eg.predicted.ents] for eg in examples]
        results["datasets"][path.parent.name] = res
        typer.echo(
            f"{path.parent.name}: F {res['ents_f']:.3f}  normalized F {res['normalized']['f']:.3f}  "
            f"unparseable {res['parse_failure_rate']:.0%}  {res['tokens_per_second']:.1f} tok/s"
        )
    per_set = results["datasets"]
    results["average_ents_f"] = average_f(per_set, "ents_f")
    results["average_normalized_f"] = average_f({k: v["normalized"] for k, v in per_set.items()}, "f")
    results["parse_failure_rate"] = sum(v["counts"].get("unparseable", 0) for v in per_set.values()) / max(
        sum(v["n_docs"] for v in per_set.values()), 1
    )
    total_seconds = sum(v["seconds"] for v in per_set.values())
    results["tokens_per_second"] = sum(v["generated_tokens"] for v in per_set.values()) / total_seconds
    results["sentences_per_second"] = sum(v["n_docs"] for v in per_set.values()) / total_seconds
    results["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    typer.echo(
        f"average: F {results['average_ents_f']:.3f}  normalized F {results['average_normalized_f']:.3f}  "
        f"unparseable {results['parse_failure_rate']:.1%}  peak {results['peak_memory_mb']:.0f} MB"
    )
    write_results(output, results)


if __name__ == "__main__":
    typer.run(main)
