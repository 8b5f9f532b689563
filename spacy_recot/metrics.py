"""Metrics: the papers' entity score, and the paired bootstrap of two runs.

spaCy's Scorer (exact character spans) is this project's primary figure. The
GNER / UniversalNER papers score differently: per sentence, the set of
`(normalize(text), normalize(label))` pairs, where normalize lower-cases,
strips punctuation and the articles a/an/the and collapses whitespace; then
micro precision/recall/F1 per dataset, and the plain average of the datasets'
F1.

Two runs on the same sentences are compared by a paired bootstrap over the
sentences (`paired_bootstrap`): whether a difference in micro F1 is more than
the noise of the sample. `evaluation.compare_runs` applies it to two results.
"""

import random
import re
import string
from typing import Dict, Iterable, List, Sequence, Set, Tuple

from spacy.tokens import Doc
from spacy.training import Example

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize(text: str) -> str:
    """Lower-case, drop punctuation and articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def entity_set(doc: Doc) -> Set[Tuple[str, str]]:
    return {(normalize(e.text), normalize(e.label_)) for e in doc.ents}


def normalized_prf(examples: Iterable[Example]) -> Dict[str, float]:
    """Micro P/R/F1 over per-sentence sets of normalized (text, label) pairs."""
    tp = n_pred = n_gold = 0
    for eg in examples:
        pred = entity_set(eg.predicted)
        gold = entity_set(eg.reference)
        tp += len(pred & gold)
        n_pred += len(pred)
        n_gold += len(gold)
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"p": p, "r": r, "f": f, "n_pred": n_pred, "n_gold": n_gold}


def average_f(per_dataset: Dict[str, Dict[str, float]], key: str = "f") -> float:
    """The plain (macro) average of the datasets' F1."""
    values: List[float] = [scores[key] for scores in per_dataset.values()]
    return sum(values) / len(values) if values else 0.0


# Per sentence: true positives, predicted and gold spans.
SpanCounts = Tuple[int, int, int]


def span_counts(pred: Iterable[Sequence], gold: Iterable[Sequence]) -> SpanCounts:
    """One sentence's exact-span counts: (spans in both, predicted, gold), each
    span a (start, end, label) triple (or list)."""
    p, g = set(map(tuple, pred)), set(map(tuple, gold))
    return len(p & g), len(p), len(g)


def micro_f1(rows: Iterable[SpanCounts]) -> float:
    """Micro F1 over sentences' `span_counts`."""
    rows = list(rows)
    tp = sum(r[0] for r in rows)
    pred = sum(r[1] for r in rows)
    gold = sum(r[2] for r in rows)
    return 2 * tp / (pred + gold) if pred + gold else 0.0


def paired_bootstrap(
    rows_a: Sequence[SpanCounts], rows_b: Sequence[SpanCounts], samples: int = 1000, seed: int = 0
) -> Tuple[float, float]:
    """The 95% interval of `micro_f1(rows_b) - micro_f1(rows_a)`: the sentences
    resampled with replacement `samples` times, the same resample for both runs
    (row i of each is the same sentence); the 2.5th and 97.5th percentiles."""
    rng = random.Random(seed)
    diffs = []
    for _ in range(samples):
        idx = [rng.randrange(len(rows_a)) for _ in rows_a]
        diffs.append(micro_f1([rows_b[i] for i in idx]) - micro_f1([rows_a[i] for i in idx]))
    diffs.sort()
    return (diffs[int(0.025 * samples)], diffs[int(0.975 * samples) - 1]) if diffs else (0.0, 0.0)
