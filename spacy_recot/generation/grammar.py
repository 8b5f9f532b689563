"""Enforcing an entity-list task's constraint while decoding, with xgrammar.

The task describes the valid answers (`tasks.grammar.EntityListConstraint`);
here they are compiled against one tokenizer's vocabulary and enforced token by
token: as transformers' logits processor (`processor`, for `generate`) or as
grammar matchers and bitmasks (for the greedy loop). An optional
`<think>...</think>` block before the JSON stays free, except that it cannot
contain "<" before its closing tag.
"""

import json
from typing import Any, List, Sequence

from ..errors import ModelLoadError
from ..tasks.grammar import ENTITY_SENTINEL

# Constrained decoding: installed with --no-deps (its metadata pulls the GPU-only triton).
XGRAMMAR_REQUIREMENT = "xgrammar==0.2.8"

# Free reasoning, then at most a few blank characters before the JSON: an
# optional block the model may open, or the rest of a block the chat template
# opened in the prompt.
THINK_EBNF = {
    "optional": 'root ::= ("<think>" [^<]* "</think>" [ \\n]{0,4})?',
    "opened": 'root ::= [^<]* "</think>" [ \\n]{0,4}',
}


def check_xgrammar() -> None:
    """Fail with the command to run when constrained decoding cannot work."""
    try:
        import xgrammar  # noqa: F401
    except ImportError as err:
        raise ModelLoadError(
            "constrained = true (model.constrained) needs xgrammar, which is not installed. "
            f"Install it with: pip install --no-deps {XGRAMMAR_REQUIREMENT} apache-tvm-ffi pydantic "
            "(--no-deps: its metadata pulls triton, a CUDA compiler it uses only on a GPU). "
            f"{type(err).__name__}: {err}"
        ) from err


class EntityGrammar:
    """Compiles each request's entity-list constraint for one tokenizer.

    thinking (str): "optional" (the model may write a think block first),
        "opened" (the prompt opened one: the model must close it) or "off".
    max_entity_words (int): The longest entity, in words.
    """

    def __init__(self, tokenizer: Any, *, vocab_size: int, max_entity_words: int = 12, thinking: str = "optional"):
        check_xgrammar()
        import xgrammar

        self.xgr = xgrammar
        self.vocab_size = vocab_size
        info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        self.compiler = xgrammar.GrammarCompiler(info)
        self.max_entity_words = max_entity_words
        self._think = xgrammar.Grammar.from_ebnf(THINK_EBNF[thinking]) if thinking in THINK_EBNF else None

    def grammar(self, request: Any) -> Any:
        """The (uncompiled) grammar of the answers allowed for `request` (its
        `constraint`, an `EntityListConstraint`)."""
        if request.constraint is None:
            raise ValueError(
                "a constrained backend (model.constrained = true) was sent a request without a "
                "constraint: requests are made by a task (spacy_recot.tasks), which describes the valid answers"
            )
        schema, entity_rules = request.constraint.grammar_parts(self.max_entity_words)
        answer = self.xgr.Grammar.from_json_schema(
            json.dumps(schema), any_whitespace=True, max_whitespace_cnt=12, any_order=True
        )
        if entity_rules:
            # The schema's grammar with the placeholder string replaced by the entity rules.
            ebnf = str(answer)
            sentinel = f'("\\"{ENTITY_SENTINEL}\\"")'
            if sentinel not in ebnf:
                raise RuntimeError(f"xgrammar wrote the entity enum in a form spacy-recot does not know: {ebnf[:500]}")
            answer = self.xgr.Grammar.from_ebnf(
                ebnf.replace(sentinel, "(entity)") + "\n" + entity_rules, root_rule_name="root"
            )
        return answer if self._think is None else self.xgr.Grammar.concat(self._think, answer)

    def compile(self, requests: Sequence[Any]) -> List[Any]:
        return [self.compiler.compile_grammar(self.grammar(r)) for r in requests]

    def processor(self, requests: Sequence[Any], rows_per_request: int = 1) -> Any:
        """A logits processor for one `generate` call over `requests`: one grammar
        per request, repeated for each of its rows (beams or returned sequences)."""
        from xgrammar.contrib.hf import LogitsProcessor

        return LogitsProcessor([c for c in self.compile(requests) for _ in range(rows_per_request)])

    def matchers(self, requests: Sequence[Any]) -> List[Any]:
        """A grammar matcher per request, for the greedy loop."""
        return [self.xgr.GrammarMatcher(c) for c in self.compile(requests)]

    def allocate_bitmask(self, rows: int) -> Any:
        return self.xgr.allocate_token_bitmask(rows, self.vocab_size)

    def apply_bitmask(self, logits: Any, bitmask: Any) -> None:
        """Forbid, in place, the tokens the bitmask does not allow."""
        self.xgr.apply_token_bitmask_inplace(logits, bitmask.to(logits.device))
