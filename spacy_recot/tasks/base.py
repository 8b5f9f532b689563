"""What every task has: one output format, the prompt that asks for it, the
constraint its answers obey, and the one reading of an answer.

A task renders a chunk and a label set into a prompt (`render`), prices the
longest valid answer (`answer_budget`, so that the component splits long docs
to fit), describes the valid answers as a constraint a backend enforces
(`constraint`), renders a perfect answer (`render_target`: training data, the
oracle backend) and reads an answer into labelled character spans with their
confidence (`read`). The component, evaluation, training's dev scorer, the
teacher's chains and the GRPO rewards read answers through a task, so an answer
means the same thing everywhere. A model's answer is untrusted input: `read`
never raises on it and never returns a span outside the chunk.
"""

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..chunks import Chunk
from ..labels import check_labels

# The output formats, by the name backends declare what they can write in.
BIO = "bio"
ENTITIES = "entities"
OUTPUT_FORMATS = (BIO, ENTITIES)

# (start_char, end_char, label): offsets into the chunk's text (the doc's text).
CharSpan = Tuple[int, int, str]
# (start_word, end_word_exclusive, label)
WordSpan = Tuple[int, int, str]


@dataclass
class Reading:
    """What an answer says about a chunk.

    spans (List[CharSpan]): Labelled character spans, offered labels only, in
        the order the answer gives them; they may overlap (the caller resolves).
    rationale (str): The text of the `<think>...</think>` block, if any.
    entities (List[Tuple[str, str]]): Entity-list answers: the (text, label)
        pairs as written, before they were searched in the text.
    counts (Counter): What was repaired or dropped, by kind.
    scores (Dict[CharSpan, float]): A confidence in [0, 1] per span, from the
        probabilities of the tokens that wrote it (when the backend gave them).
    """

    spans: List[CharSpan] = field(default_factory=list)
    rationale: str = ""
    entities: List[Tuple[str, str]] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    scores: Dict[CharSpan, float] = field(default_factory=dict)


def item_limit(chunk: Chunk) -> int:
    """The most entities (entity-list output) or words (BIO output) read from an
    answer about `chunk`: twice its words plus 16. A valid answer writes each
    word, or names each mention, once; the room is for re-split words and a
    mention under two labels. Past it an answer only repeats itself, and the
    work of placing it would grow with its length times the chunk's."""
    return 2 * len(chunk.words) + 16


def descriptions_block(labels: Sequence[str], descriptions: Optional[Dict[str, str]]) -> str:
    """A short definition per label, as a block of the prompt ("" for none)."""
    if not descriptions:
        return ""
    lines = [f"- {label}: {descriptions[label]}" for label in labels if descriptions.get(label)]
    if not lines:
        return ""
    return "Entity type definitions:\n" + "\n".join(lines) + "\n"


class Task:
    """A prompt, the format of its answers and how they are read."""

    output_format = ""
    # The registry name of the task (prompt) that suggests itself for this format.
    suggestion = ""

    def check_labels(self, labels: Sequence[str], key: str) -> List[str]:
        """The labels, stripped, or a `ValueError` naming `key` and what is wrong."""
        return check_labels(labels, key)

    def schema(self, labels: Sequence[str]) -> List[str]:
        """The labels as the model is shown them (and writes them back)."""
        return list(labels)

    def label_groups(self, labels: Sequence[str]) -> List[List[str]]:
        """The labels asked about together: one prompt per group and chunk."""
        return [list(labels)]

    def render(self, chunk: Chunk, labels: Sequence[str], descriptions: Optional[Dict[str, str]] = None) -> str:
        """The model input for one chunk and label group."""
        raise NotImplementedError

    def render_target(self, chunk: Chunk, spans: Sequence[WordSpan]) -> str:
        """The perfect answer for word spans of the chunk."""
        raise NotImplementedError

    def answer_budget(
        self, labels: Sequence[str], count_tokens: Callable[[Sequence[str]], List[int]]
    ) -> Tuple[int, int]:
        """What an answer costs beyond the words it repeats, at worst, in the
        model's tokens: (a fixed part, a part per word of the chunk)."""
        raise NotImplementedError

    def constraint(self, chunk: Chunk, schema: Sequence[str]) -> Any:
        """The valid answers for a chunk, as a backend that enforces them reads it."""
        return None

    def read(
        self,
        chunk: Chunk,
        answer: str,
        labels: Sequence[str],
        *,
        roundtrip: Optional[Callable[[Sequence[str]], List[str]]] = None,
        all_occurrences: bool = False,
    ) -> Reading:
        """Read one answer about `chunk` into spans of the offered `labels`.

        roundtrip: The words as the backend can write them back (BIO output of a
            tokenizer that loses characters).
        all_occurrences (bool): Entity-list output: place a string at every
            occurrence in the chunk.
        """
        raise NotImplementedError
