"""Entity labels: checking what a user gives, and matching what a model writes back.

Models write labels back in their own spelling ("Person", "programming  language",
ReasoningNER's lower-cased schema), so answers are matched to the offered labels
by `fold_label`: case-insensitively with runs of whitespace folded. Two offered
labels that fold to the same key could not be told apart in an answer: they
are refused when the labels are set.
"""

from typing import Dict, Iterable, List, Optional, Sequence


def fold_label(label: str) -> str:
    """The key answers are matched on: lower-cased, whitespace runs folded."""
    return " ".join(str(label).lower().split())


def check_labels(labels: Sequence[str], key: str) -> List[str]:
    """The labels, stripped, or a `ValueError` naming `key` and what is wrong.

    An empty list is allowed here (the component fills it at `initialize` or
    by `add_label`); the component refuses to run without labels. A task may
    refuse more (the BIO task: labels its format cannot carry).
    """
    if isinstance(labels, str) or not isinstance(labels, (list, tuple)):
        raise ValueError(f"{key} must be a list of label names, not {labels!r}")
    cleaned = [label.strip() if isinstance(label, str) else label for label in labels]
    bad = [label for label in cleaned if not isinstance(label, str) or not label]
    if bad:
        raise ValueError(f"{key} holds empty or non-string labels: {bad!r}")
    seen: Dict[str, str] = {}
    for label in cleaned:
        other = seen.setdefault(fold_label(label), label)
        if other == label and cleaned.count(label) > 1:
            raise ValueError(f"{key} lists {label!r} more than once")
        if other != label:
            raise ValueError(
                f"{key}: {other!r} and {label!r} differ only in case or spacing; a model's "
                "answer cannot tell them apart, so keep one of them"
            )
    return list(cleaned)


class LabelMatcher:
    """Maps a label as a model wrote it to the offered label it stands for."""

    def __init__(self, labels: Iterable[str]):
        self._canon = {fold_label(label): label for label in labels}

    def __call__(self, written: object) -> Optional[str]:
        """The offered label, or None when `written` is none of them."""
        if written is None or isinstance(written, (dict, list)):
            return None
        return self._canon.get(fold_label(str(written)))
