"""Which of overlapping answers should `doc.ents` keep: the longest (spaCy's
`filter_spans`) or the most confident (`overlaps = "score"`)?

The default model answers each sentence once (the first `--n` sentences of each
GNER zero-shot set, the datasets' own words, bfloat16 for speed); the same
answers are then read with each policy, so the comparison is exact. Writes JSON.

    python benchmarks/overlaps.py ../shared/data/gner --n 20 --output benchmarks/results/overlaps_1.5b.json
    python benchmarks/overlaps.py ../shared/data/gner --n 10 --model qwen2.5-coder-0.5b-instruct \
        --output benchmarks/results/overlaps.json
"""

import time
from pathlib import Path
from typing import Any, Dict, List

import typer
from results_io import write_results

from spacy_recot.backends.packaged import DEFAULT_PACKAGED

ROOT = Path(__file__).resolve().parents[1]

SETS = ["crossner_ai", "crossner_literature", "crossner_music", "crossner_politics", "crossner_science", "mit-movie"]


def main(
    gner: Path = typer.Argument(..., help="The GNER layout folder (../shared/data/gner)."),
    n: int = typer.Option(10, "--n", help="Sentences per set."),
    dtype: str = typer.Option("bfloat16", "--dtype"),
    model_name: str = typer.Option(
        DEFAULT_PACKAGED, "--model", help="The packaged model (the 2026-11-28 run: the 0.5B one)."
    ),
    output: Path = typer.Option(ROOT / "benchmarks" / "results" / "overlaps.json", "--output", "-o"),
) -> None:
    import spacy
    from spacy.scorer import Scorer
    from spacy.training import Example

    from spacy_recot.conll import read_conll, read_label_file, sentences_to_docs
    from spacy_recot.metrics import average_f, normalized_prf

    nlp = spacy.blank("en")
    model = {"@misc": "spacy_recot.PackagedCausal.v3", "name": model_name, "dtype": dtype}
    pipe = nlp.add_pipe("recot_ner", config={"labels": ["x"], "model": model})
    results: Dict[str, Any] = {"n_per_set": n, "dtype": dtype, "model": model_name, "sets": {}}
    start = time.perf_counter()
    for name in SETS:
        golds = sentences_to_docs(nlp.vocab, list(read_conll(gner / name / "test.txt"))[:n])
        pipe.labels = read_label_file(gner / name / "label.txt")
        docs = [
            spacy.tokens.Doc(nlp.vocab, words=[t.text for t in g], spaces=[bool(t.whitespace_) for t in g])
            for g in golds
        ]
        requests = [pipe.requests_for(doc) for doc in docs]
        flat = [r for rs in requests for r in rs]
        answers: List[str] = []
        for i in range(0, len(flat), pipe.batch_size):
            answers.extend(pipe.model(flat[i : i + pipe.batch_size]))
        per_policy = {}
        for policy in ("longest", "score"):
            pipe.overlaps = policy
            it = iter(answers)
            examples = []
            for doc, gold, rs in zip(docs, golds, requests):
                copy = doc.copy()
                pipe.set_annotations(copy, [(r, next(it)) for r in rs])
                examples.append(Example(copy, gold))
            scores = Scorer().score_spans(examples, "ents")
            per_policy[policy] = {"exact_f": scores["ents_f"] or 0.0, "normalized": normalized_prf(examples)}
        results["sets"][name] = per_policy
        typer.echo(f"{name}: " + ", ".join(f"{p} {v['normalized']['f']:.3f}" for p, v in per_policy.items()))
    for policy in ("longest", "score"):
        results[f"average_normalized_f_{policy}"] = average_f(
            {k: v[policy]["normalized"] for k, v in results["sets"].items()}, "f"
        )
        results[f"average_exact_f_{policy}"] = average_f({k: v[policy] for k, v in results["sets"].items()}, "exact_f")
    results["seconds"] = time.perf_counter() - start
    write_results(output, results)


if __name__ == "__main__":
    typer.run(main)
