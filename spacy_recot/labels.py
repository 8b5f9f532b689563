"""Entity labels: checking what a user gives, and matching what a model writes back.

Models write labels back in their own spelling ("Person", "programming  language",
ReasoningNER's lower-cased schema), so answers are matched to the offered labels
by `fold_label`: case-insensitively with runs of whitespace folded. Two offered
labels that fold to the same key could not be told apart in an answer: they
are refused when the labels are set. A model can also define the labels
(`definition_prompt`, read back by `read_definition`; the component's
`describe_labels`).
"""

import re
from typing import Dict, Iterable, List, Optional, Sequence, Tuple


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


# Label definitions the model writes itself (SLIMER, GuideNER and ZeroNER report
# gains on unseen types from one-line definitions). All labels are shown, so that
# a definition can say how its type differs from the others ("person" beside
# "politician").
DEFINITION_PROMPT = (
    "Named entities will be tagged with these types: {labels}.\n"
    'Write a one-sentence definition of the type "{label}" for the annotators: which '
    "text spans it covers, and how it differs from the other types. Answer with the "
    "definition only."
)
# The longest definition kept, in characters: one sentence, not an essay in every prompt.
MAX_DEFINITION_CHARS = 240


def definition_prompt(label: str, labels: Sequence[str]) -> str:
    """The prompt that asks the model to define `label` among `labels`."""
    return DEFINITION_PROMPT.format(label=label, labels=", ".join(labels))


def read_definition(answer: str, label: str) -> Tuple[Optional[str], Optional[str]]:
    """A model's definition of `label`, cleaned, and what was done to it.

    The answer is untrusted: a reasoning block, a "label:" prefix, quotes or
    code fences are dropped, and only the first line is kept, cut at a sentence
    end when it runs past MAX_DEFINITION_CHARS. Returns (definition, repair),
    repair being None (kept as written), "trimmed" or "unusable" (no
    definition: the definition is None).
    """
    # Imported here: the tasks import this module for LabelMatcher.
    from .tasks.think import split_rationale

    text = split_rationale(str(answer))[1].replace("```", "\n")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return None, "unusable"
    first = lines[0]
    prefix = re.compile(rf"^(definition|{re.escape(label)})\s*[:\-\u2013]\s*", re.IGNORECASE)
    kept = prefix.sub("", first.strip("\"'` *")).strip("\"'` *")
    if len(kept) > MAX_DEFINITION_CHARS:
        cut = kept[:MAX_DEFINITION_CHARS]
        end = cut.rfind(". ")
        kept = cut[: end + 1] if end > 0 else cut.rsplit(" ", 1)[0] + " ..."
    if not re.search(r"[^\W\d_]{2,}", kept):  # no word in it
        return None, "unusable"
    return kept, None if kept == str(answer).strip() else "trimmed"
