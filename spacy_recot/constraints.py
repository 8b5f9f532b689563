"""Guaranteed-valid entity-list answers: a grammar per prompt, enforced while decoding.

For each request the answer must be `{"entities": {label: [entity, ...], ...}}`
with offered labels as keys (any subset, in any order)
and every entity one of the chunk's word n-grams, copied from the text
character for character (written in the grammar as a walk along the words,
which compiles about 7x faster than the enum of every n-gram; same language). Whitespace between JSON tokens is free but bounded
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


# Stands for the entity strings in the schema's grammar, where `entity_rules` goes.
_ENTITY_SENTINEL = "SPACY_RECOT_ENTITY"


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
        # (Any word with a letter or digit is a candidate of one word.)
        has_entities = any(has_word_char(word) for word in request.chunk.words)
        schema = answer_schema(request.labels, [_ENTITY_SENTINEL] if has_entities else [])
        answer = self.xgr.Grammar.from_json_schema(
            json.dumps(schema), any_whitespace=True, max_whitespace_cnt=12, any_order=True
        )
        if has_entities:
            # The schema's grammar with the sentinel's string replaced by the entity rules.
            ebnf = str(answer)
            sentinel = f'("\\"{_ENTITY_SENTINEL}\\"")'
            if sentinel not in ebnf:
                raise RuntimeError(f"xgrammar wrote the entity enum in a form spacy-recot does not know: {ebnf[:500]}")
            ebnf = ebnf.replace(sentinel, "(entity)") + "\n" + entity_rules(request.chunk, self.max_entity_words)
            answer = self.xgr.Grammar.from_ebnf(ebnf, root_rule_name="root")
        return answer if self._think is None else self.xgr.Grammar.concat(self._think, answer)

    def processor(self, requests: Sequence[Request], rows_per_request: int = 1) -> Any:
        """A logits processor for one `generate` call over `requests`: one grammar
        per request, repeated for each of its rows (beams or returned sequences)."""
        from xgrammar.contrib.hf import LogitsProcessor

        compiled = [self.compiler.compile_grammar(self.grammar(r)) for r in requests]
        return LogitsProcessor([c for c in compiled for _ in range(rows_per_request)])
