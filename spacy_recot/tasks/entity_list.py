"""The entity-list task (ReasoningNER and zero-shot JSON prompts): the model
may reason in `<think>...</think>`, then writes `{"entities": {label: [text,
...]}}`; each string is found in the chunk's text, in order of appearance, and
scored by the probabilities of the tokens that wrote it.

The valid answers are described once (`grammar.EntityListConstraint`): the
in-process backends compile its grammar, a server gets its JSON schema.
"""

import json
from collections import Counter
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from spacy.util import registry

from ..chunks import Chunk
from .base import ENTITIES, CharSpan, Reading, Task, WordSpan, descriptions_block, item_limit
from .confidence import entity_scores
from .grammar import EntityListConstraint
from .json_answer import parse_entity_list
from .spans import find_spans
from .think import reasoning_end

ENTITY_LIST_INSTRUCTION = (
    "Extract the named entities of the given types from the sentence below.\n"
    "Copy every entity exactly as it is written in the sentence, and give each one "
    "exactly one of the entity types.\n"
    "Answer with JSON only, in the form "
    '{{"entities": {{"<entity type>": ["<entity>", ...], ...}}}}, '
    "using only these entity types as keys: {labels}.\n"
)


# ReasoningNER's user turn, verbatim (rner/prompt.py of HuiResearch/ReasoningIE,
# filled in and stripped as its `InputExample.to_prompt` does): published
# ReasoningNER/Qwen3 checkpoints were trained on it. Note the full-width colon.
REASONING_NER_TEMPLATE = """You are an excellent information extraction assistant. Please extract the corresponding entities from the following sentence based on the provided schema and return them in JSON format.

Note:
1) The schema specifies the list of entity types that can be extracted;
2) Only extract entities that are included in the schema.

Schema：
{schema}

Output format:
{example}

Sentence:
{sentence}"""

# The output example of that prompt: placeholder labels and entities.
REASONING_NER_EXAMPLE = {"entities": {"label1": ["x1", "x2"], "label2": ["x3"]}}

# Labels ReasoningNER removes from every schema (rner/utils.py `is_valid_label`).
GENERIC_LABELS = ("na", "n a", "misc", "else", "other", "nan")


def entity_json(entities: Sequence[Tuple[str, str]]) -> str:
    """`{"entities": {label: [text, ...]}}`, labels in order of first appearance."""
    grouped: Dict[str, List[str]] = {}
    for text, label in entities:
        grouped.setdefault(label, []).append(text)
    return json.dumps({"entities": grouped}, ensure_ascii=False)


def span_scores(chunk: Chunk, answer: str, reading: Reading) -> Dict[CharSpan, float]:
    """A confidence per span of an entity-list answer, from the probabilities
    of the tokens that wrote its string; empty when the answer carries none."""
    if not getattr(answer, "token_scores", ()):
        return {}
    by_text = entity_scores(answer, reading.entities, reasoning_end(answer))
    loose = {("".join(ch for ch in text if ch.isalnum()), label): score for (text, label), score in by_text.items()}
    out: Dict[CharSpan, float] = {}
    for start, end, label in reading.spans:
        text = chunk.text[start:end].lower()
        score = by_text.get((text, label), loose.get(("".join(ch for ch in text if ch.isalnum()), label)))
        if score is not None:
            out[(start, end, label)] = score
    return out


def read_entities(
    chunk: Chunk,
    answer: str,
    labels: Sequence[str],
    *,
    all_occurrences: bool = False,
) -> Reading:
    """Read an entity-list answer (`<think>...</think>` then JSON), find each
    entity string in the chunk's text, in order of appearance, and score it.

    all_occurrences (bool): Place a string at every occurrence in the chunk.
    """
    counts: Counter = Counter()
    rationale, items = parse_entity_list(answer, labels, counts)
    limit = item_limit(chunk)
    if len(items) > limit:
        counts["entities_cut"] += len(items) - limit
        items = items[:limit]
    starts = {s for s, _ in chunk.offsets}
    ends = {e for _, e in chunk.offsets}
    spans = find_spans(
        chunk.text,
        items,
        lambda s, e: s in starts and e in ends,
        region=(chunk.start_char, chunk.end_char),
        all_occurrences=all_occurrences,
        counts=counts,
    )
    reading = Reading(spans=spans, rationale=rationale, entities=items, counts=counts)
    reading.scores = span_scores(chunk, answer, reading)
    return reading


class EntityListPrompt(Task):
    """A zero-shot JSON prompt for instruction-tuned models: entities grouped by type."""

    output_format = ENTITIES
    suggestion = "an entity-list prompt: spacy_recot.ZeroShotJSONPrompt.v1 or spacy_recot.ReasoningNERPrompt.v1"

    def answer_budget(
        self, labels: Sequence[str], count_tokens: Callable[[Sequence[str]], List[int]]
    ) -> Tuple[int, int]:
        # The JSON skeleton with every label, then, at worst, every word inside
        # some entity string (plus a quote or comma each).
        skeleton = json.dumps({"entities": {label: [] for label in self.schema(labels)}})
        return count_tokens([skeleton])[0] + 2, 1

    def constraint(self, chunk: Chunk, schema: Sequence[str]) -> EntityListConstraint:
        return EntityListConstraint(tuple(schema), chunk)

    def read(
        self,
        chunk: Chunk,
        answer: str,
        labels: Sequence[str],
        *,
        roundtrip: Optional[Callable[[Sequence[str]], List[str]]] = None,
        all_occurrences: bool = False,
    ) -> Reading:
        return read_entities(chunk, answer, labels, all_occurrences=all_occurrences)

    def render(
        self,
        chunk: Chunk,
        labels: Sequence[str],
        descriptions: Optional[Dict[str, str]] = None,
    ) -> str:
        text = ENTITY_LIST_INSTRUCTION.format(labels=", ".join(labels))
        text += descriptions_block(labels, descriptions)
        text += "Sentence: " + chunk.text[chunk.start_char : chunk.end_char]
        return text

    def render_target(self, chunk: Chunk, spans: Sequence[WordSpan]) -> str:
        return entity_json([(chunk.slice_text(s, e), label) for s, e, label in spans])


class ReasoningNERPrompt(EntityListPrompt):
    """ReasoningNER's prompt: a schema of entity types, an output example, the
    sentence; the answer is `<think>...</think>` then `{"entities": {...}}`.

    example_labels (str): "placeholders" shows the example with `label1` and
        `label2`, verbatim, as ReasoningNER checkpoints were trained; "schema"
        shows it with the schema's own labels and empty lists, which keeps
        untuned instruction models from copying the placeholder keys.
    drop_generic_labels (bool): Remove labels such as "misc" and "other" from
        the schema, as ReasoningNER does.
    questions (str): "all" asks about every label in one prompt; "per_label"
        asks one prompt per label (the schema holds that label alone), as
        UniNER asks one question per type.
    """

    def __init__(self, example_labels: str = "placeholders", drop_generic_labels: bool = True, questions: str = "all"):
        if example_labels not in ("placeholders", "schema"):
            raise ValueError(f"example_labels must be 'placeholders' or 'schema', not {example_labels!r}")
        if questions not in ("all", "per_label"):
            raise ValueError(f"prompt.questions must be 'all' or 'per_label', not {questions!r}")
        self.example_labels = example_labels
        self.drop_generic_labels = drop_generic_labels
        self.questions = questions

    def label_groups(self, labels: Sequence[str]) -> List[List[str]]:
        if self.questions == "per_label":
            return [[label] for label in labels if self.schema([label])]
        return [list(labels)]

    def schema(self, labels: Sequence[str]) -> List[str]:
        """Lower-cased, sorted, generic labels removed (ReasoningNER's `process_schema`)."""
        names = sorted(label.lower().strip() for label in labels)
        if self.drop_generic_labels:
            names = [name for name in names if name and name not in GENERIC_LABELS]
        return names

    def render(
        self,
        chunk: Chunk,
        labels: Sequence[str],
        descriptions: Optional[Dict[str, str]] = None,
    ) -> str:
        schema = self.schema(labels)
        if self.example_labels == "placeholders":
            example = REASONING_NER_EXAMPLE
        else:
            example = {"entities": {label: [] for label in schema}}
        text = REASONING_NER_TEMPLATE.format(
            schema=json.dumps(schema, ensure_ascii=False),
            example=json.dumps(example, ensure_ascii=False, indent=2),
            sentence=chunk.text[chunk.start_char : chunk.end_char],
        )
        if descriptions:
            # Not part of ReasoningNER's prompt: only added when asked for.
            text = text.replace(
                "\n\nOutput format:", "\n" + descriptions_block(labels, descriptions) + "\nOutput format:"
            )
        return text

    def render_target(self, chunk: Chunk, spans: Sequence[WordSpan], rationale: str = "") -> str:
        """ReasoningNER's completion for word spans of a chunk."""
        return self.render_answer([(chunk.slice_text(s, e), label) for s, e, label in spans], rationale)

    def render_answer(self, entities: Sequence[Tuple[str, str]], rationale: str = "") -> str:
        """ReasoningNER's completion: the reasoning in a think block, then the
        JSON with indent 2, labels lower-cased (as in its schema)."""
        grouped: Dict[str, List[str]] = {}
        for text, label in entities:
            grouped.setdefault(label.lower(), []).append(text)
        answer = json.dumps({"entities": grouped}, ensure_ascii=False, indent=2)
        return f"<think>\n{rationale}\n</think>\n{answer}" if rationale else answer


# The prompts an entity-list training example can be rendered with, by their
# short names (the training scripts' --prompt): ReasoningNER's verbatim prompt,
# or the component's default, so that an adapter trained on it serves the
# default configuration.
TRAINING_PROMPTS = {
    "reasoning": "spacy_recot.ReasoningNERPrompt.v1",
    "zero-shot-json": "spacy_recot.ZeroShotJSONPrompt.v1",
}


@registry.misc("spacy_recot.EntityListPrompt.v1")
def make_entity_list_prompt() -> EntityListPrompt:
    """A plain JSON entity-list instruction for untuned instruction models."""
    return EntityListPrompt()


@registry.misc("spacy_recot.ReasoningNERPrompt.v1")
def make_reasoning_ner_prompt(
    example_labels: str = "placeholders", drop_generic_labels: bool = True
) -> ReasoningNERPrompt:
    """ReasoningNER's prompt, verbatim by default, for ReasoningNER/Qwen3 checkpoints
    and (with example_labels = "schema") untuned instruction models."""
    return ReasoningNERPrompt(example_labels=example_labels, drop_generic_labels=drop_generic_labels)


@registry.misc("spacy_recot.ZeroShotJSONPrompt.v1")
def make_zero_shot_json_prompt(drop_generic_labels: bool = False, questions: str = "all") -> ReasoningNERPrompt:
    """ReasoningNER's prompt with its output example written with the schema's own
    labels (and empty lists), for untuned instruction models: with the verbatim
    example, Qwen2.5-Coder-0.5B copied the placeholder keys `label1`/`label2`.
    The component's default prompt (chosen by measurement, see the README)."""
    return ReasoningNERPrompt(example_labels="schema", drop_generic_labels=drop_generic_labels, questions=questions)
