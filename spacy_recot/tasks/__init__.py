"""Tasks: one per output format, each owning its prompt, its answer budget, the
constraint its answers obey and the one reading of an answer.

- `bio.BIOPrompt` (GNER, ReCoT-NER): every word with its BIO tag.
- `entity_list.EntityListPrompt`, `entity_list.ReasoningNERPrompt` (ReasoningNER,
  zero-shot JSON): reasoning in a think block, then the entities as JSON.

The registered prompts (`spacy_recot.ReCoTPrompt.v1`, `spacy_recot.GNERPrompt.v1`,
`spacy_recot.ReasoningNERPrompt.v1`, `spacy_recot.ZeroShotJSONPrompt.v1`,
`spacy_recot.EntityListPrompt.v1`) return tasks.
"""

from typing import Any, Sequence

from ..chunks import Chunk
from .base import BIO, ENTITIES, OUTPUT_FORMATS, CharSpan, Reading, Task, WordSpan, item_limit
from .bio import (
    BIO_PROMPTS,
    GNER_INSTRUCTION,
    RECOT_INSTRUCTION,
    BIOConstraint,
    BIOPrompt,
    bio_prompt,
    make_gner_prompt,
    make_recot_prompt,
    read_bio,
    spans_to_tags,
)
from .entity_list import (
    GENERIC_LABELS,
    REASONING_NER_TEMPLATE,
    TRAINING_PROMPTS,
    EntityListPrompt,
    ReasoningNERPrompt,
    entity_json,
    make_entity_list_prompt,
    make_reasoning_ner_prompt,
    make_zero_shot_json_prompt,
    read_entities,
)
from .grammar import EntityListConstraint

# Each output format's reader, for tools that hold a format's name (the fuzzer,
# the oracle): the component, training and the rewards read through their task.
READERS = {BIO: read_bio, ENTITIES: read_entities}


def read_answer(output_format: str, chunk: Chunk, answer: str, labels: Sequence[str], **options: Any) -> Reading:
    """Read `answer` with the reader of `output_format` ("bio" or "entities").

    options: the reader's keyword options (`written_words` for "bio",
        `all_occurrences` for "entities"); options of the other format are
        ignored, so callers need not branch on the format.
    """
    if output_format not in READERS:
        raise ValueError(f"Unknown output format {output_format!r}: use one of {list(OUTPUT_FORMATS)}")
    accepted = {BIO: ("written_words",), ENTITIES: ("all_occurrences",)}[output_format]
    return READERS[output_format](chunk, answer, labels, **{k: v for k, v in options.items() if k in accepted})


__all__ = [
    "BIO",
    "BIO_PROMPTS",
    "ENTITIES",
    "GENERIC_LABELS",
    "GNER_INSTRUCTION",
    "OUTPUT_FORMATS",
    "REASONING_NER_TEMPLATE",
    "RECOT_INSTRUCTION",
    "TRAINING_PROMPTS",
    "BIOConstraint",
    "BIOPrompt",
    "CharSpan",
    "EntityListConstraint",
    "EntityListPrompt",
    "ReasoningNERPrompt",
    "Reading",
    "Task",
    "WordSpan",
    "bio_prompt",
    "entity_json",
    "item_limit",
    "make_entity_list_prompt",
    "make_gner_prompt",
    "make_reasoning_ner_prompt",
    "make_recot_prompt",
    "make_zero_shot_json_prompt",
    "READERS",
    "read_answer",
    "read_bio",
    "read_entities",
    "spans_to_tags",
]
