"""The answers an entity-list task allows for a chunk, as a constraint a backend
enforces: `{"entities": {label: [entity, ...], ...}}` with offered labels as
keys (any subset, in any order) and every entity one of the chunk's word
n-grams, copied from the text character for character.

One source for both ways of enforcing it: the JSON schema (an `enum` of the
n-grams) that an OpenAI-compatible server takes as `response_format`, and the
grammar the in-process backends compile with xgrammar, where the entity strings
are written as a walk along the words (the same language as the enum, compiled
about 7x faster). The backend decides only how long an entity may be
(`max_entity_words`) and whether a think block may come first.
"""

import json
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

from ..chunks import Chunk


def has_word_char(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def candidate_entities(chunk: Chunk, max_words: int) -> List[str]:
    """Every run of up to `max_words` words of the chunk, as written in the text,
    that starts and ends with a word holding a letter or digit."""
    seen: Dict[str, None] = {}
    n = len(chunk.words)
    for start in range(n):
        if not has_word_char(chunk.words[start]):
            continue
        for end in range(start + 1, min(start + max_words, n) + 1):
            if has_word_char(chunk.words[end - 1]):
                seen.setdefault(chunk.slice_text(start, end), None)
    return list(seen)


def answer_schema(labels: Sequence[str], entities: Sequence[str]) -> Dict[str, Any]:
    """The JSON schema of an answer: labels from `labels`, entities from `entities`."""
    items: Dict[str, Any] = {"type": "string", "enum": list(entities)} if entities else {}
    array: Dict[str, Any] = {"type": "array", "items": items} if entities else {"type": "array", "maxItems": 0}
    return {
        "type": "object",
        "properties": {
            "entities": {
                "type": "object",
                "properties": {label: array for label in labels},
                # Any subset in any order (compiled with any_order): ReasoningNER
                # writes labels in the order of their first entity, and listing
                # every empty label cost a 0.5B model ~8 tokens per label.
                "required": [],
                "additionalProperties": False,
            }
        },
        "required": ["entities"],
        "additionalProperties": False,
    }


# Stands for the entity strings in the schema's grammar, where `entity_rules` goes.
ENTITY_SENTINEL = "SPACY_RECOT_ENTITY"


def _ebnf_literal(text: str) -> str:
    """`text` JSON-encoded (without quotes), as an EBNF string literal."""
    # (DEL escaped as xgrammar's enum writes it.)
    encoded = json.dumps(text, ensure_ascii=False)[1:-1].replace("\x7f", "\\u007f")
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def entity_rules(chunk: Chunk, max_words: int) -> str:
    """EBNF for `entity`: any of `candidate_entities(chunk, max_words)` as a JSON
    string. The same language as their enum, written as a walk along the words
    (a rule per word and length so far): an enum of every n-gram made a grammar
    whose compiling took about 0.4 s a sentence (measured with 13 labels and 40
    words), a tenth of the time of decoding its answer with the 0.5B model."""
    n, words = len(chunk.words), chunk.words
    text = [chunk.text[a:b] for a, b in chunk.offsets]
    gaps = [chunk.text[chunk.offsets[j][1] : chunk.offsets[j + 1][0]] for j in range(n - 1)]

    # viable[j][d]: an entity can be finished after word j, with d words so far.
    viable = [[False] * (max_words + 1) for _ in range(n)]
    for j in range(n - 1, -1, -1):
        for d in range(max_words, 0, -1):
            onward = j + 1 < n and d < max_words and viable[j + 1][d + 1]
            viable[j][d] = has_word_char(words[j]) or onward
    rules, starts = [], []
    for j in range(n):
        for d in range(1, max_words + 1):
            if not viable[j][d]:
                continue
            options = ['"\\""'] if has_word_char(words[j]) else []
            if j + 1 < n and d < max_words and viable[j + 1][d + 1]:
                options.append(f"{_ebnf_literal(gaps[j] + text[j + 1])} entity_{j + 1}_{d + 1}")
            rules.append(f"entity_{j}_{d} ::= " + " | ".join(f"({o})" for o in options))
        if has_word_char(words[j]) and viable[j][1]:
            starts.append(f"({_ebnf_literal(text[j])} entity_{j}_1)")
    return "\n".join(['entity ::= "\\"" (' + " | ".join(starts) + ")"] + rules)


@dataclass(frozen=True)
class EntityListConstraint:
    """The valid entity-list answers for one chunk and schema.

    labels (Tuple[str, ...]): The keys the answer may use (the prompt's schema).
    chunk (Chunk): Where the entity strings come from (read only here).
    """

    labels: Tuple[str, ...]
    chunk: Chunk

    def has_entities(self) -> bool:
        """Whether any word can be an entity (one holding a letter or digit)."""
        return any(has_word_char(word) for word in self.chunk.words)

    def json_schema(self, max_entity_words: int) -> Dict[str, Any]:
        """The JSON schema of the answers, entities as an enum of the n-grams."""
        return answer_schema(self.labels, candidate_entities(self.chunk, max_entity_words))

    def grammar_parts(self, max_entity_words: int) -> Tuple[Dict[str, Any], str]:
        """The JSON schema with one placeholder string standing for every entity,
        and the EBNF rules (`entity ::= ...`) that replace it; "" when no word
        can be an entity (the lists must then stay empty)."""
        if not self.has_entities():
            return answer_schema(self.labels, []), ""
        return answer_schema(self.labels, [ENTITY_SENTINEL]), entity_rules(self.chunk, max_entity_words)
