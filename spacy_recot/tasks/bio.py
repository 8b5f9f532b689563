"""The BIO task (GNER, ReCoT-NER): the model writes every word of the chunk with
its tag, `Barack(B-person) Obama(I-person) visited(O) Paris(B-location)`.

The answer is read back onto the input words with GNER's hierarchical
matching (`bio_tags`), so the spans are the chunk's own words. A backend that
enforces the format (`spacy_recot.HFSeq2Seq.v3`'s forced decoding) reads the
words and labels from `BIOConstraint`.
"""

from collections import Counter
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from spacy.util import registry

from ..chunks import Chunk
from .base import BIO, Reading, Task, WordSpan, descriptions_block, item_limit
from .bio_tags import align_tags, normalize_tags, parse_bio, tags_to_spans

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


@dataclass(frozen=True)
class BIOConstraint:
    """Valid BIO answers: every word of `words` in order, each with `O` or a
    `B-`/`I-` tag of `labels` (an `I-` only after a tag of its label)."""

    words: Tuple[str, ...]
    labels: Tuple[str, ...]


def read_bio(
    chunk: Chunk,
    answer: str,
    labels: Sequence[str],
    *,
    written_words: Optional[Sequence[str]] = None,
) -> Reading:
    """Read GNER-format output (`word(B-type) word(O) ...`) onto the chunk's words.

    written_words (Optional[Sequence[str]]): The chunk's words as the model can
        write them back (a T5 tokenizer loses some characters); default: the
        words themselves.
    """
    counts: Counter = Counter()
    words, raw_tags = parse_bio(answer, counts)
    limit = item_limit(chunk)
    if len(words) > limit:
        counts["words_cut"] += len(words) - limit
        words, raw_tags = words[:limit], raw_tags[:limit]
    reference = list(written_words) if written_words is not None else chunk.words
    tags = align_tags(reference, words, raw_tags, counts)
    tags = normalize_tags(tags, labels, counts)
    spans = [(chunk.offsets[s][0], chunk.offsets[e - 1][1], label) for s, e, label in tags_to_spans(tags)]
    return Reading(spans=spans, counts=counts)


class BIOPrompt(Task):
    """A GNER-style prompt: the model writes every word with its BIO tag."""

    output_format = BIO
    suggestion = "a BIO prompt: spacy_recot.ReCoTPrompt.v1 or spacy_recot.GNERPrompt.v1"

    def __init__(self, instruction: str):
        self.instruction = instruction

    def check_labels(self, labels: Sequence[str], key: str) -> List[str]:
        cleaned = super().check_labels(labels, key)
        unfit = [label for label in cleaned if any(ch in label for ch in "()\n\r")]
        if unfit:
            raise ValueError(
                f"{key}: {unfit!r} hold a parenthesis or a line break, which the BIO output "
                "format `word(B-label)` cannot carry; rename them (e.g. 'unit (SI)' -> 'SI unit')"
            )
        return cleaned

    def render(
        self,
        chunk: Chunk,
        labels: Sequence[str],
        descriptions: Optional[Dict[str, str]] = None,
    ) -> str:
        """The model input for one chunk, with the labels in the order given."""
        text = self.instruction
        text += f"\nUse the specific entity tags: {', '.join(labels)} and O.\n"
        text += descriptions_block(labels, descriptions)
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

    def constraint(self, chunk: Chunk, schema: Sequence[str]) -> BIOConstraint:
        return BIOConstraint(tuple(chunk.words), tuple(schema))

    def read(
        self,
        chunk: Chunk,
        answer: str,
        labels: Sequence[str],
        *,
        roundtrip: Optional[Callable[[Sequence[str]], List[str]]] = None,
        all_occurrences: bool = False,
    ) -> Reading:
        written = roundtrip(chunk.words) if roundtrip is not None else None
        return read_bio(chunk, answer, labels, written_words=written)


# The BIO prompts by their short names (the command line's --prompt).
BIO_PROMPTS = {"recot": "spacy_recot.ReCoTPrompt.v1", "gner": "spacy_recot.GNERPrompt.v1"}


def bio_prompt(name: str) -> BIOPrompt:
    """The BIO task called `name` ("recot" or "gner")."""
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
