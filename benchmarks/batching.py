"""Throughput of `nlp.pipe` by batch size, on the real seq2seq path.

A tiny T5 (built from a config, tokenizer trained on the data) runs the
recot_ner component over the first N sentences of a GNER test set. Every
answer is forced to the same length (min_new_tokens = max_new_tokens), so the
runs do the same generation work and differ only in batching. Reports the
median of several runs per batch size and the ratio to batch size 1, all
measured side by side in one process. Writes JSON.

    OMP_NUM_THREADS=1 python benchmarks/batching.py ../shared/data/gner/crossner_ai/test.txt
"""

import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import spacy
import torch
import typer
from results_io import write_results

from spacy_recot.conll import read_conll
from spacy_recot.testing.tiny import tiny_t5, train_t5_tokenizer


def main(
    data: Path = typer.Argument(..., help="A CoNLL/GNER test file"),
    n: int = typer.Option(64, "--n", help="Sentences"),
    batch_sizes: str = typer.Option("1,4,16", "--batch-sizes"),
    runs: int = typer.Option(3, "--runs"),
    new_tokens: int = typer.Option(48, "--new-tokens"),
    output: Path = typer.Option(Path("benchmarks/results/batching.json"), "--output", "-o"),
) -> None:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    all_texts = [" ".join(s.words) for s in read_conll(data)]
    texts = all_texts[:n]
    tokenizer = train_t5_tokenizer(all_texts, vocab_size=500)
    with tempfile.TemporaryDirectory() as tmp:
        tiny_t5(tokenizer).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        nlp = spacy.blank("en")
        nlp.add_pipe(
            "recot_ner",
            config={
                "labels": ["person", "location", "organization"],
                "model": {
                    "@misc": "spacy_recot.HFSeq2Seq.v1",
                    "name_or_path": tmp,
                    "generation": {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False},
                },
            },
        )
        nlp.initialize()
        list(nlp.pipe(texts[:4], batch_size=4))  # warm-up
        timings: Dict[int, List[float]] = {}
        sizes = [int(b) for b in batch_sizes.split(",")]
        for _ in range(runs):
            for size in sizes:  # interleaved, so drift hits every size alike
                start = time.perf_counter()
                list(nlp.pipe(texts, batch_size=size))
                timings.setdefault(size, []).append(time.perf_counter() - start)
    medians = {size: statistics.median(t) for size, t in timings.items()}
    results = {
        "machine": platform.platform(),
        "threads": torch.get_num_threads(),
        "data": str(data),
        "sentences": len(texts),
        "new_tokens_per_answer": new_tokens,
        "runs": runs,
        "seconds": {str(k): v for k, v in timings.items()},
        "median_seconds": {str(k): v for k, v in medians.items()},
        "sentences_per_second": {str(k): len(texts) / v for k, v in medians.items()},
        "speedup_vs_batch_1": {str(k): medians[sizes[0]] / v for k, v in medians.items()},
    }
    for size in sizes:
        typer.echo(
            f"batch {size:>3}: {len(texts) / medians[size]:7.2f} sentences/s  x{medians[sizes[0]] / medians[size]:.2f}"
        )
    write_results(output, results)


if __name__ == "__main__":
    typer.run(main)
