"""bfloat16 or float32 on this CPU, for each packaged model, side by side.

`dtype = "auto"` picks bfloat16 on CPUs with native bfloat16 (AVX-512 BF16 or
AMX). This runs the default settings (constrained, batch 16, shared prefix,
greedy loop) in both precisions for each --model, over the first --n
CrossNER-AI sentences with the set's 13 labels, the variants interleaved,
medians of --runs, one thread; and says which bfloat16 units the CPU has.
The time of each model against the first one, at the same precision, is what
the bigger model costs.

    OMP_NUM_THREADS=1 python benchmarks/dtype_choice.py corpus/gner/crossner_ai \
        --output benchmarks/results/dtype_choice.json
"""

import os
import statistics
import time
from pathlib import Path
from typing import Dict, List

import spacy
import torch
import typer
from results_io import machine, write_results

from spacy_recot.backends.packaged import DEFAULT_PACKAGED, FAST_PACKAGED
from spacy_recot.conll import read_labels
from spacy_recot.evaluation import read_examples

MODELS = [FAST_PACKAGED, DEFAULT_PACKAGED]


def main(
    corpus: Path = typer.Argument(..., help="A converted set: <folder>/test.spacy"),
    models: List[str] = typer.Option(MODELS, "--model"),
    n: int = typer.Option(8, "--n"),
    runs: int = typer.Option(3, "--runs"),
    output: Path = typer.Option(Path("benchmarks/results/dtype_choice.json"), "--output", "-o"),
) -> None:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    blank = spacy.blank("en")
    path = corpus / "test.spacy"
    texts = [eg.reference.text for eg in read_examples(blank, path, limit=n)]
    labels = read_labels(path)
    pipelines = {}
    for name in models:
        for dtype in ("bfloat16", "float32"):
            nlp = spacy.blank("en")
            model = {"@misc": "spacy_recot.PackagedCausal.v3", "name": name, "dtype": dtype}
            nlp.add_pipe("recot_ner", config={"labels": labels, "model": model})
            nlp.initialize()
            list(nlp.pipe(texts[:1]))  # warm-up: loads weights and the grammar compiler
            pipelines[(name, dtype)] = nlp
    times: Dict[tuple, List[float]] = {key: [] for key in pipelines}
    ents: Dict[tuple, list] = {}
    for run in range(runs):
        for key, nlp in pipelines.items():
            start = time.perf_counter()
            docs = list(nlp.pipe(texts))
            times[key].append(time.perf_counter() - start)
            ents[key] = [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in docs]
            typer.echo(f"run {run + 1}: {key[0]} {key[1]}: {times[key][-1]:.1f} s")
    median = {key: statistics.median(ts) for key, ts in times.items()}
    first = models[0]
    results = {
        "corpus": str(corpus),
        "sentences": len(texts),
        "runs": runs,
        "threads": torch.get_num_threads(),
        **machine(),
        "models": {},
    }
    for name in models:
        bf16, f32 = median[(name, "bfloat16")], median[(name, "float32")]
        results["models"][name] = {
            "bfloat16_s": [round(t, 2) for t in times[(name, "bfloat16")]],
            "float32_s": [round(t, 2) for t in times[(name, "float32")]],
            "bfloat16_median_s": round(bf16, 2),
            "float32_median_s": round(f32, 2),
            "float32_time_over_bfloat16": round(f32 / bf16, 3),
            "same_entities_bfloat16_float32": sum(
                a == b for a, b in zip(ents[(name, "bfloat16")], ents[(name, "float32")])
            ),
            "time_vs_first_model_bfloat16": round(bf16 / median[(first, "bfloat16")], 3),
            "time_vs_first_model_float32": round(f32 / median[(first, "float32")], 3),
        }
        typer.echo(f"{name}: bfloat16 {bf16:.1f} s, float32 {f32:.1f} s")
    write_results(output, results)


if __name__ == "__main__":
    typer.run(main)
