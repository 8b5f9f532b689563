"""The grammar-sparse output layer of the causal greedy loop, side by side.

The default settings on the packaged Qwen2.5-Coder-0.5B (constrained, bfloat16,
batch 16) over the first --n CrossNER-AI sentences with the set's 13 labels, with the
output layer applied to the grammar's allowed tokens only (the default) and to
all 151,936 tokens (`SPARSE_HEAD_SHARE = 0`), interleaved, medians of --runs.

    OMP_NUM_THREADS=1 python benchmarks/sparse_head.py corpus/gner/crossner_ai \
        --output benchmarks/results/sparse_head.json
"""

import statistics
import time
from pathlib import Path

import spacy
import typer
from results_io import write_results

from spacy_recot.backends.packaged import FAST_PACKAGED
from spacy_recot.conll import read_labels
from spacy_recot.evaluation import read_examples


def main(
    corpus: Path = typer.Argument(...),
    n: int = typer.Option(16),
    runs: int = typer.Option(3),
    output: Path = typer.Option(Path("benchmarks/results/sparse_head.json")),
) -> None:
    nlp = spacy.blank("en")
    path = corpus / "test.spacy"
    texts = [eg.reference.text for eg in read_examples(nlp, path, limit=n)]
    # The packaged 0.5B model, as when these figures were taken (the default model is now the 1.5B).
    model = {"@misc": "spacy_recot.PackagedCausal.v3", "name": FAST_PACKAGED}
    pipe = nlp.add_pipe("recot_ner", config={"labels": read_labels(path), "model": model})
    nlp.initialize()
    backend = pipe.model
    list(nlp.pipe(texts[:2]))  # warm-up
    variants = {"sparse output layer (default)": 0.25, "output layer over all tokens": 0.0}
    times = {name: [] for name in variants}
    ents = {}
    steps = {}
    for _ in range(runs):
        for name, share in variants.items():
            backend.SPARSE_HEAD_SHARE = share
            backend.stats.clear()
            start = time.perf_counter()
            docs = list(nlp.pipe(texts))
            times[name].append(time.perf_counter() - start)
            ents[name] = [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in docs]
            steps[name] = backend.stats.get("sparse_head_steps", 0)
            typer.echo(f"{name}: {times[name][-1]:.1f} s")
    base = statistics.median(times["output layer over all tokens"])
    write_results(
        output,
        {
            "corpus": str(corpus),
            "sentences": len(texts),
            "runs": runs,
            "variants": {
                name: {
                    "runs_s": [round(t, 2) for t in ts],
                    "median_s": round(statistics.median(ts), 2),
                    "speedup_vs_full_output_layer": round(base / statistics.median(ts), 2),
                    "sparse_steps_last_run": steps[name],
                }
                for name, ts in times.items()
            },
            "same_entities": sum(a == b for a, b in zip(*ents.values())),
        },
    )


if __name__ == "__main__":
    typer.run(main)
