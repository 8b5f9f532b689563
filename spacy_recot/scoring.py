"""The papers' entity score, for comparison with published tables.

spaCy's Scorer (exact character spans) is this project's primary figure. The
GNER / UniversalNER papers score differently: per sentence, the set of
`(normalize(text), normalize(label))` pairs, where normalize lower-cases,
strips punctuation and the articles a/an/the and collapses whitespace; then
micro precision/recall/F1 per dataset, and the plain average of the datasets'
F1.
"""

import re
import string
from typing import Dict, Iterable, List, Set, Tuple

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
