"""Prompts: what the model is asked, and what a perfect answer looks like.

A prompt renders a chunk and a label set into model input (`render`), renders
a gold answer in the model's output format (`render_target`, used to build
training data and by the oracle backend), and names the output format its
answers are parsed with (`output_format`: "bio" or "entities").
"""
import json
from typing import Dict, List, Optional, Sequence, Tuple

from spacy.util import registry

from .chunks import Chunk

# (start_word, end_word_exclusive, label)
WordSpan = Tuple[int, int, str]

# GNER's instruction, verbatim (configs/instruction_configs/instruction.json in
# the GNER repository): published GNER-T5 checkpoints were trained on it.
GNER_INSTRUCTION = (
    "Please analyze the sentence provided, identifying the type of entity for each word "
    "on a token-by-token basis.\n"
    "Output format is: word_1(label_1), word_2(label_2), ...\n"
    "We'll use the BIO-format to label the entities, where:\n"
    "1. B- (Begin) indicates the start of a named entity.\n"
    "2. I- (Inside) is used for words within a named entity but are not the first word.\n"
    "3. O (Outside) denotes words that are not part of a named entity.\n"
)

# This project's two-step chain-of-thought instruction: span detection first,
# then type classification, then the same word(label) output as GNER.
RECOT_INSTRUCTION = (
    "Please analyze the sentence provided and recognize its named entities in two steps.\n"
    "Step 1 (span detection): find every span of words that names an entity, "
    "whatever its type.\n"
    "Step 2 (type classification): give each span found in step 1 exactly one of the "
    "entity types offered below, and drop spans that fit none of them.\n"
    "Then label every word of the sentence, in order.\n"
    "Output format is: word_1(label_1), word_2(label_2), ...\n"
    "We'll use the BIO-format to label the entities, where:\n"
    "1. B- (Begin) indicates the start of a named entity.\n"
    "2. I- (Inside) is used for words within a named entity but are not the first word.\n"
    "3. O (Outside) denotes words that are not part of a named entity.\n"
)

ENTITY_LIST_INSTRUCTION = (
    "Extract the named entities of the given types from the sentence below.\n"
    "Copy every entity exactly as it is written in the sentence, and give each one "
    "exactly one of the entity types.\n"
    "Answer with JSON only, in the form "
    '{{"entities": {{"<entity type>": ["<entity>", ...], ...}}}}, '
    "using only these entity types as keys: {labels}.\n"
)


def spans_to_tags(n_words: int, spans: Sequence[WordSpan]) -> List[str]:
    """BIO tags for `n_words` words from word spans (later spans do not overwrite)."""
    tags = ["O"] * n_words
    for start, end, label in spans:
        if any(t != "O" for t in tags[start:end]):
            continue
        tags[start] = f"B-{label}"
        for i in range(start + 1, end):
            tags[i] = f"I-{label}"
    return tags


def entity_json(entities: Sequence[Tuple[str, str]]) -> str:
    """`{"entities": {label: [text, ...]}}`, labels in order of first appearance."""
    grouped: Dict[str, List[str]] = {}
    for text, label in entities:
        grouped.setdefault(label, []).append(text)
    return json.dumps({"entities": grouped}, ensure_ascii=False)


def _descriptions_block(labels: Sequence[str], descriptions: Optional[Dict[str, str]]) -> str:
    if not descriptions:
        return ""
    lines = [f"- {label}: {descriptions[label]}" for label in labels if descriptions.get(label)]
    if not lines:
        return ""
    return "Entity type definitions:\n" + "\n".join(lines) + "\n"


class BIOPrompt:
    """A GNER-style prompt: the model writes every word with its BIO tag."""

    output_format = "bio"

    def __init__(self, instruction: str):
        self.instruction = instruction

    def render(
        self,
        chunk: Chunk,
        labels: Sequence[str],
        descriptions: Optional[Dict[str, str]] = None,
    ) -> str:
        """The model input for one chunk, with the labels in the order given."""
        text = self.instruction
        text += f"\nUse the specific entity tags: {', '.join(labels)} and O.\n"
        text += _descriptions_block(labels, descriptions)
        text += "Sentence: " + " ".join(chunk.words)
        return text

    def render_target(self, chunk: Chunk, spans: Sequence[WordSpan]) -> str:
        """The perfect answer: `word(tag)` for every word, joined by spaces."""
        tags = spans_to_tags(len(chunk.words), spans)
        return " ".join(f"{word}({tag})" for word, tag in zip(chunk.words, tags))


class EntityListPrompt:
    """A zero-shot JSON prompt for instruction-tuned models: entities grouped by type."""

    output_format = "entities"

    def render(
        self,
        chunk: Chunk,
        labels: Sequence[str],
        descriptions: Optional[Dict[str, str]] = None,
    ) -> str:
        text = ENTITY_LIST_INSTRUCTION.format(labels=", ".join(labels))
        text += _descriptions_block(labels, descriptions)
        text += "Sentence: " + chunk.text[chunk.start_char : chunk.end_char]
        return text

    def render_target(self, chunk: Chunk, spans: Sequence[WordSpan]) -> str:
        return entity_json([(chunk.slice_text(s, e), label) for s, e, label in spans])


@registry.misc("spacy_recot.GNERPrompt.v1")
def make_gner_prompt() -> BIOPrompt:
    """The GNER instruction, verbatim, for published GNER-T5 checkpoints."""
    return BIOPrompt(GNER_INSTRUCTION)


@registry.misc("spacy_recot.ReCoTPrompt.v1")
def make_recot_prompt() -> BIOPrompt:
    """This project's two-step chain-of-thought instruction (ReCoT-NER)."""
    return BIOPrompt(RECOT_INSTRUCTION)


@registry.misc("spacy_recot.EntityListPrompt.v1")
def make_entity_list_prompt() -> EntityListPrompt:
    """A plain JSON entity-list instruction for untuned instruction models."""
    return EntityListPrompt()
