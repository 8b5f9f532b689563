"""Scoring a pipeline on converted datasets, both ways (spaCy's and the papers')."""
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import spacy
from spacy.language import Language
from spacy.tokens import DocBin
from spacy.scorer import Scorer
from spacy.training import Example

from .component import USER_DATA_KEY
from .conll import labels_file
from .scoring import average_f, normalized_prf


def read_examples(nlp: Language, path: Path, limit: int = 0) -> List[Example]:
    """Examples whose predicted docs are made by the pipeline's tokenizer, as
    `spacy evaluate` makes them."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No data file at {path}")
    docs = DocBin().from_disk(path).get_docs(nlp.vocab)
    examples = []
    for i, gold in enumerate(docs):
        if limit and i >= limit:
            break
        examples.append(Example(nlp.make_doc(gold.text), gold))
    return examples


def evaluate_dataset(
    nlp: Language,
    examples: Sequence[Example],
    component: str,
    labels: Optional[List[str]] = None,
    batch_size: int = 8,
) -> Dict[str, Any]:
    """spaCy's scores, the normalized set scores and the parser's counts."""
    pipe = nlp.get_pipe(component)
    if labels is not None:
        pipe.labels = labels
    start = time.perf_counter()
    # As Language.evaluate does, but on the examples themselves, so that the
    # predicted docs stay available for the normalized score and the counts.
    docs = nlp.pipe((eg.predicted for eg in examples), batch_size=batch_size)
    for eg, doc in zip(examples, docs):
        eg.predicted = doc
    seconds = time.perf_counter() - start
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
        "labels": list(pipe.labels),
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
) -> Dict[str, Any]:
    """Score a pipeline on each dataset and average the F1s."""
    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    nlp = spacy.load(pipeline)
    if component not in nlp.pipe_names:
        raise ValueError(f"The pipeline {pipeline} has no component '{component}' (it has {nlp.pipe_names})")
    nlp.get_pipe(component).show_progress = show_progress
    results: Dict[str, Any] = {"pipeline": str(pipeline), "datasets": {}}
    for path in data:
        path = Path(path)
        labels = None
        if use_file_labels and labels_file(path).exists():
            labels = json.loads(labels_file(path).read_text(encoding="utf-8"))
        name = path.parent.name if path.stem in ("test", "dev", "train") else path.stem
        examples = read_examples(nlp, path, limit)
        results["datasets"][name] = evaluate_dataset(nlp, examples, component, labels, batch_size)
    results["average_ents_f"] = average_f(results["datasets"], "ents_f")
    results["average_normalized_f"] = average_f(
        {k: v["normalized"] for k, v in results["datasets"].items()}, "f"
    )
    return results
