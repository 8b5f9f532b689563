"""Guaranteed-valid entity-list answers: a grammar per prompt, enforced while decoding.

For each request the answer must be `{"entities": {label: [entity, ...], ...}}`
with offered labels as keys (any subset, in any order)
and every entity one of the chunk's word n-grams, copied from the text
character for character. Whitespace between JSON tokens is free but bounded
(forcing one layout made a 0.5B model answer with empty lists, measured), so
the model can write the layout it prefers without looping on blanks. An optional
`<think>...</think>` block before the JSON stays free, except that it cannot
contain "<" before its closing tag.

xgrammar compiles the grammar against the tokenizer's vocabulary and masks the
logits of every token that would leave it (its `contrib.hf.LogitsProcessor`).
"""

import json
from typing import Any, Dict, List, Sequence

from .chunks import Chunk, Request

# Free reasoning, then at most a few blank characters before the JSON: an
# optional block the model may open, or the rest of a block the chat template
# opened in the prompt.
THINK_EBNF = {
    "optional": 'root ::= ("<think>" [^<]* "</think>" [ \\n]{0,4})?',
    "opened": 'root ::= [^<]* "</think>" [ \\n]{0,4}',
}


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


class EntityConstraint:
    """Builds and compiles the grammar of each request for one tokenizer."""

    def __init__(self, tokenizer: Any, *, vocab_size: int, max_entity_words: int = 12, thinking: str = "optional"):
        """thinking (str): "optional" (the model may write a think block first),
        "opened" (the prompt opened one: the model must close it) or "off"."""
        from .backends import check_xgrammar

        check_xgrammar()
        import xgrammar

        self.xgr = xgrammar
        info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        self.compiler = xgrammar.GrammarCompiler(info)
        self.max_entity_words = max_entity_words
        self._think = xgrammar.Grammar.from_ebnf(THINK_EBNF[thinking]) if thinking in THINK_EBNF else None

    def grammar(self, request: Request) -> Any:
        """The (uncompiled) grammar of the answers allowed for `request`."""
        schema = answer_schema(request.labels, candidate_entities(request.chunk, self.max_entity_words))
        answer = self.xgr.Grammar.from_json_schema(
            json.dumps(schema), any_whitespace=True, max_whitespace_cnt=12, any_order=True
        )
        return answer if self._think is None else self.xgr.Grammar.concat(self._think, answer)

    def processor(self, requests: Sequence[Request], rows_per_request: int = 1) -> Any:
        """A logits processor for one `generate` call over `requests`: one grammar
        per request, repeated for each of its rows (beams or returned sequences)."""
        from xgrammar.contrib.hf import LogitsProcessor

        compiled = [self.compiler.compile_grammar(self.grammar(r)) for r in requests]
        return LogitsProcessor([c for c in compiled for _ in range(rows_per_request)])
