"""Prompts: what the model is asked, and what a perfect answer looks like.

A prompt renders a chunk and a label set into model input (`render`), renders
a gold answer in the model's output format (`render_target`, used to build
training data and by the oracle backend), and names the output format its
answers are parsed with (`output_format`: "bio" or "entities").
"""

import json
from typing import Callable, Dict, List, Optional, Sequence, Tuple

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


class Prompt:
    """What every prompt has: an output format and the labels as shown."""

    output_format = ""

    def schema(self, labels: Sequence[str]) -> List[str]:
        """The labels as the model is shown them (and writes them back)."""
        return list(labels)

    def label_groups(self, labels: Sequence[str]) -> List[List[str]]:
        """The labels asked about together: one prompt per group and chunk."""
        return [list(labels)]

    def answer_budget(
        self, labels: Sequence[str], count_tokens: Callable[[Sequence[str]], List[int]]
    ) -> Tuple[int, int]:
        """What an answer costs beyond the words it repeats, at worst, in the
        model's tokens: (a fixed part, a part per word of the chunk). The
        component splits long docs so that the answer fits `max_new_tokens`."""
        # Entity lists: the JSON skeleton with every label, then, at worst,
        # every word inside some entity string (plus a quote or comma each).
        skeleton = json.dumps({"entities": {label: [] for label in self.schema(labels)}})
        return count_tokens([skeleton])[0] + 2, 1


class BIOPrompt(Prompt):
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

    def answer_budget(
        self, labels: Sequence[str], count_tokens: Callable[[Sequence[str]], List[int]]
    ) -> Tuple[int, int]:
        # Every word comes back with a tag, and any word may open or continue
        # an entity: price each with the dearest tag, and a space.
        tags = ["O"] + [f"{prefix}-{label}" for label in self.schema(labels) for prefix in "BI"]
        return 2, max(count_tokens([f"({tag})" for tag in tags])) + 1

    def render_target(self, chunk: Chunk, spans: Sequence[WordSpan]) -> str:
        """The perfect answer: `word(tag)` for every word, joined by spaces."""
        tags = spans_to_tags(len(chunk.words), spans)
        return " ".join(f"{word}({tag})" for word, tag in zip(chunk.words, tags))


class EntityListPrompt(Prompt):
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


class ReasoningNERPrompt(Prompt):
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

    output_format = "entities"

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
                "\n\nOutput format:", "\n" + _descriptions_block(labels, descriptions) + "\nOutput format:"
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

# The BIO prompts by their short names (the command line's --prompt).
BIO_PROMPTS = {"recot": "spacy_recot.ReCoTPrompt.v1", "gner": "spacy_recot.GNERPrompt.v1"}


def bio_prompt(name: str) -> BIOPrompt:
    """The BIO prompt called `name` ("recot" or "gner")."""
    if name not in BIO_PROMPTS:
        raise ValueError(f"--prompt must be one of {sorted(BIO_PROMPTS)}, not {name!r}")
    return registry.misc.get(BIO_PROMPTS[name])()


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
