"""The shipped adapter costs no speed: the default model with it merged, side by side with
the packaged model as it is (zero-shot), on the same sentences, in one process.

    OMP_NUM_THREADS=1 python benchmarks/adapter_speed.py corpus/gner --n 32 --runs 3

Each run times both pipelines on the same sentences (alternating which goes first);
the result is the median seconds per sentence of each, their ratio, and how many
docs got other entities (the adapter is meant to change answers, not speed).
"""

import statistics
import time
from pathlib import Path
from typing import Any, Dict, List

import spacy
import torch
import typer
from results_io import machine, write_results

from spacy_recot.backends.packaged import DEFAULT_ADAPTER
from spacy_recot.conll import read_labels
from spacy_recot.evaluation import read_examples

app = typer.Typer(add_completion=False)

VARIANTS = {
    "zero-shot (adapter null)": None,
    f"shipped adapter ({DEFAULT_ADAPTER}, the default)": DEFAULT_ADAPTER,
}


def pipeline(labels: List[str], adapter: Any) -> Any:
    nlp = spacy.blank("en")
    model = {"@misc": "spacy_recot.PackagedCausal.v4", "adapter": adapter}
    nlp.add_pipe("recot_ner", config={"labels": labels, "model": model})
    nlp.initialize()
    return nlp


@app.command()
def main(
    data: Path = typer.Argument(..., help="Converted GNER sets (corpus/gner)."),
    set_name: str = typer.Option("crossner_ai", "--set"),
    n: int = typer.Option(32, "--n", help="Sentences (the first N)."),
    runs: int = typer.Option(3, "--runs"),
    threads: int = typer.Option(1, "--threads"),
    output: Path = typer.Option(Path("benchmarks/results/adapter_speed.json"), "--output", "-o"),
) -> None:
    torch.set_num_threads(threads)
    path = data / set_name / "test.spacy"
    labels = read_labels(path)
    texts = [eg.reference.text for eg in read_examples(spacy.blank("en"), path, limit=n)]
    pipes = {name: pipeline(labels, adapter) for name, adapter in VARIANTS.items()}
    for nlp in pipes.values():  # load and warm up outside the timing
        list(nlp.pipe(texts[:2]))
    seconds: Dict[str, List[float]] = {name: [] for name in pipes}
    ents: Dict[str, List[Any]] = {}
    for run in range(runs):
        order = list(pipes) if run % 2 == 0 else list(reversed(pipes))
        for name in order:
            start = time.perf_counter()
            docs = list(pipes[name].pipe(texts))
            seconds[name].append((time.perf_counter() - start) / len(texts))
            ents[name] = [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in docs]
    zero, shipped = list(VARIANTS)
    medians = {name: statistics.median(s) for name, s in seconds.items()}
    results = {
        **machine(),
        "dtype": str(pipes[zero].get_pipe("recot_ner").model.model.dtype),
        "set": set_name,
        "n": len(texts),
        "runs": runs,
        "threads": threads,
        "seconds_per_sentence": seconds,
        "median_seconds_per_sentence": medians,
        "shipped_vs_zero_shot_time": medians[shipped] / medians[zero],
        "docs_with_other_entities": sum(a != b for a, b in zip(ents[zero], ents[shipped])),
    }
    write_results(output, results)
    typer.echo(f"median s/sentence: {medians}; shipped / zero-shot = {results['shipped_vs_zero_shot_time']:.3f}")


if __name__ == "__main__":
    app()
