"""Scoring a pipeline on converted datasets, both ways (spaCy's and the papers')."""

import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import spacy
from spacy.language import Language
from spacy.scorer import Scorer
from spacy.tokens import Doc
from spacy.training import Example

from .component import USER_DATA_KEY
from .conll import labels_file, read_docbin, read_labels
from .metrics import average_f, micro_f1, normalized_prf, paired_bootstrap, span_counts

TOKENIZATIONS = ("reference", "pipeline")


def read_examples(nlp: Language, path: Path, limit: int = 0, tokenization: str = "reference") -> List[Example]:
    """Examples from a converted `.spacy` set.

    tokenization (str): "reference" (default) builds each predicted doc from
        the dataset's own words, so the model sees exactly the words the papers'
        evaluation shows it (GNER's protocol); "pipeline" re-tokenizes the text
        with the pipeline's tokenizer, as `spacy evaluate` does.
    """
    return make_examples(nlp, read_docbin(path, nlp.vocab, limit), tokenization)


def make_examples(nlp: Language, golds: Iterable[Doc], tokenization: str = "reference") -> List[Example]:
    """Examples for gold docs, tokenized as `read_examples` describes."""
    if tokenization not in TOKENIZATIONS:
        raise ValueError(f"tokenization must be one of {TOKENIZATIONS}, not {tokenization!r}")
    examples = []
    for gold in golds:
        if tokenization == "reference":
            predicted = Doc(nlp.vocab, words=[t.text for t in gold], spaces=[bool(t.whitespace_) for t in gold])
        else:
            predicted = nlp.make_doc(gold.text)
        examples.append(Example(predicted, gold))
    return examples


def evaluate_dataset(
    nlp: Language,
    examples: Sequence[Example],
    component: str,
    labels: Optional[List[str]] = None,
    batch_size: int = 8,
) -> Dict[str, Any]:
    """spaCy's scores, the normalized set scores and the parser's counts.

    labels (Optional[List[str]]): Ask for these labels for this dataset only;
        the component's own labels are restored afterwards.
    batch_size (int): Docs buffered per call of the pipeline (the component's
        own `batch_size` sets the prompts per backend call).
    """
    pipe = nlp.get_pipe(component)
    saved = list(pipe.labels)
    if labels is not None:
        pipe.labels = labels
    try:
        start = time.perf_counter()
        # As Language.evaluate does, but on the examples themselves, so that the
        # predicted docs stay available for the normalized score and the counts.
        docs = nlp.pipe((eg.predicted for eg in examples), batch_size=batch_size)
        for eg, doc in zip(examples, docs):
            eg.predicted = doc
        seconds = time.perf_counter() - start
        used = list(pipe.labels)
    finally:
        if labels is not None:
            pipe.labels = saved
    scores = Scorer(nlp=nlp).score(list(examples))
    counts: Counter = Counter()
    for eg in examples:
        record = eg.predicted.user_data.get(USER_DATA_KEY, {}).get(component, {})
        counts.update(record.get("counts", {}))
    return {
        "ents_p": scores.get("ents_p") or 0.0,
        "ents_r": scores.get("ents_r") or 0.0,
        "ents_f": scores.get("ents_f") or 0.0,
        "ents_per_type": scores.get("ents_per_type") or {},
        "normalized": normalized_prf(examples),
        "counts": dict(sorted(counts.items())),
        "n_docs": len(examples),
        "seconds": seconds,
        "labels": used,
    }


def evaluate_pipeline(
    pipeline: str,
    data: Sequence[Path],
    *,
    component: str = "recot_ner",
    use_file_labels: bool = True,
    batch_size: int = 8,
    limit: int = 0,
    gpu_id: int = -1,
    show_progress: bool = False,
    tokenization: str = "reference",
) -> Dict[str, Any]:
    """Score a pipeline on each dataset and average the F1s (see `read_examples`
    for `tokenization`)."""
    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    nlp = spacy.load(pipeline)
    if component not in nlp.pipe_names:
        raise ValueError(f"The pipeline {pipeline} has no component '{component}' (it has {nlp.pipe_names})")
    nlp.get_pipe(component).show_progress = show_progress
    results: Dict[str, Any] = {"pipeline": str(pipeline), "tokenization": tokenization, "datasets": {}}
    for path in data:
        path = Path(path)
        labels = read_labels(path) if use_file_labels and labels_file(path).exists() else None
        name = path.parent.name if path.stem in ("test", "dev", "train") else path.stem
        examples = read_examples(nlp, path, limit, tokenization)
        results["datasets"][name] = evaluate_dataset(nlp, examples, component, labels, batch_size)
    results["average_ents_f"] = average_f(results["datasets"], "ents_f")
    results["average_normalized_f"] = average_f({k: v["normalized"] for k, v in results["datasets"].items()}, "f")
    return results


def compare_runs(
    result_a: Dict[str, Any], result_b: Dict[str, Any], data: Path, samples: int = 1000, seed: int = 0
) -> Dict[str, Any]:
    """Two runs of `benchmarks/zero_shot.py` (with each doc's predictions) on the
    same sentences: per set and over all, the docs whose entities changed, the
    exact-span micro F1 of each run, and the paired bootstrap interval of the
    difference (b - a). `data` holds the converted sets (`<set>/test.spacy`),
    whose gold entities are read again."""
    nlp = spacy.blank("en")
    per_set: Dict[str, Any] = {}
    rows_a: List[Tuple[int, int, int]] = []
    rows_b: List[Tuple[int, int, int]] = []
    for name, res_a in result_a["datasets"].items():
        res_b = result_b["datasets"].get(name)
        if res_b is None:
            continue
        pa, pb = res_a["predictions"], res_b["predictions"]
        n = min(len(pa), len(pb))
        golds = [
            [(e.start_char, e.end_char, e.label_) for e in eg.reference.ents]
            for eg in read_examples(nlp, Path(data) / name / "test.spacy", limit=n)
        ]
        changed = sum(sorted(map(tuple, x)) != sorted(map(tuple, y)) for x, y in zip(pa[:n], pb[:n]))
        ca = [span_counts(p, g) for p, g in zip(pa[:n], golds)]
        cb = [span_counts(p, g) for p, g in zip(pb[:n], golds)]
        rows_a += ca
        rows_b += cb
        per_set[name] = {"docs": n, "changed_docs": changed, "f1_a": micro_f1(ca), "f1_b": micro_f1(cb)}
    low, high = paired_bootstrap(rows_a, rows_b, samples, seed)
    total = sum(v["docs"] for v in per_set.values())
    changed = sum(v["changed_docs"] for v in per_set.values())
    return {
        "docs": total,
        "changed_docs": changed,
        "changed_share": changed / total if total else 0.0,
        "micro_f1_a": micro_f1(rows_a),
        "micro_f1_b": micro_f1(rows_b),
        "micro_f1_difference": micro_f1(rows_b) - micro_f1(rows_a),
        "bootstrap_95_interval_of_difference": [low, high],
        "sets": per_set,
    }
