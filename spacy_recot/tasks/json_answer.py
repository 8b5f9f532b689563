"""Reading the JSON of an entity-list answer: the first JSON value in the text
(in a code fence or not), repaired where models get it wrong (truncation,
single quotes, duplicate keys), and the (text, label) pairs of the shapes models
write. Nothing here raises on model output; what was repaired or dropped is
counted."""

import ast
import json
import re
import warnings
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..labels import LabelMatcher
from .think import split_rationale

FENCE_RE = re.compile(r"```(?:json|JSON)?\s*(.*?)(?:```|$)", re.DOTALL)

TEXT_KEYS = ("text", "name", "entity", "span", "mention", "value")
LABEL_KEYS = ("label", "type", "entity_type", "category", "tag")


def _pairs_hook(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    """Keep duplicate keys by merging their lists instead of keeping the last
    (in place: the parser's own lists and objects, so an answer that repeats a
    key many times costs its length, not its square)."""
    out: Dict[str, Any] = {}
    for key, value in pairs:
        if key in out and isinstance(out[key], list) and isinstance(value, list):
            out[key].extend(value)
        elif key in out and isinstance(out[key], dict) and isinstance(value, dict):
            merged = out[key]
            for k, v in value.items():
                if isinstance(v, list) and isinstance(merged.get(k), list):
                    merged[k].extend(v)
                else:
                    merged[k] = v
        else:
            out[key] = value
    return out


def _close(text: str) -> Optional[str]:
    """Close the lists and objects a truncated JSON text left open; None when
    it stops inside a string (a half-written entity is not an entity)."""
    stack: List[str] = []
    in_str: Optional[str] = None
    escaped = False
    for ch in text:
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == in_str:
                in_str = None
        elif ch in "\"'":
            in_str = ch
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and stack:
            stack.pop()
    if in_str:
        return None
    out = re.sub(r"[,:\s]+$", "", text)
    return out + "".join(reversed(stack))


def _truncation_repairs(text: str, tries: int = 4) -> List[str]:
    """Ways to finish a truncated JSON text: close it as it is, then cut back to
    each of its last few commas (dropping a half-written item) and close."""
    repairs = [_close(text)]
    for _ in range(tries):
        cut = text.rfind(",")
        if cut == -1:
            break
        text = text[:cut]
        repairs.append(_close(text))
    return [r for r in repairs if r is not None]


def _load(candidate: str) -> Optional[Any]:
    try:
        return json.loads(candidate, object_pairs_hook=_pairs_hook)
    except (ValueError, RecursionError):
        pass
    try:
        # Single quotes, Python literals (True/None): a Python dict literal.
        # Compiling the answer can warn (invalid escapes, "is" with a literal):
        # a model's answer must not print to the user's stderr.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = ast.literal_eval(candidate)
        return value if isinstance(value, (dict, list)) else None
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return None


def _json_candidates(answer: str) -> List[str]:
    fenced = [m.group(1) for m in FENCE_RE.finditer(answer)]
    candidates = []
    for text in fenced + [answer]:
        start = min((i for i in (text.find("{"), text.find("[")) if i != -1), default=-1)
        if start == -1:
            continue
        body = text[start:]
        end = max(body.rfind("}"), body.rfind("]"))
        if end != -1:
            candidates.append(body[: end + 1])
        candidates.append(body)
    return candidates


def parse_json_answer(answer: str, counts: Optional[Counter] = None) -> Optional[Any]:
    """The first JSON value found in the answer, repairing what models get wrong."""
    counts = counts if counts is not None else Counter()
    for candidate in _json_candidates(answer):
        value = _load(candidate)
        if value is not None:
            return value
        for repair in _truncation_repairs(candidate):
            value = _load(repair)
            if value is not None:
                counts["json_repaired"] += 1
                return value
    return None


def _entity_items(value: Any) -> List[Tuple[Any, Any]]:
    """(text, label) pairs from the shapes models use for entity lists."""
    items: List[Tuple[Any, Any]] = []
    if isinstance(value, dict):
        inner = None
        for key in ("entities", "Entities", "entity", "result", "results", "ner"):
            if key in value:
                inner = value[key]
                break
        if inner is None:
            inner = value
        value = inner
    if isinstance(value, dict):
        for label, texts in value.items():
            if isinstance(texts, (list, tuple)):
                items.extend((text, label) for text in texts)
            else:
                items.append((texts, label))
    elif isinstance(value, list):
        for obj in value:
            if isinstance(obj, dict):
                text = next((obj[k] for k in TEXT_KEYS if k in obj), None)
                label = next((obj[k] for k in LABEL_KEYS if k in obj), None)
                if text is None and label is None and len(obj) == 1:
                    # [{"person": "Obama"}]
                    ((label, text),) = obj.items()
                items.append((text, label))
            elif isinstance(obj, (list, tuple)) and len(obj) == 2:
                items.append((obj[0], obj[1]))
            else:
                items.append((obj, None))
    return items


def parse_entity_list(
    output: str, labels: Sequence[str], counts: Optional[Counter] = None
) -> Tuple[str, List[Tuple[str, str]]]:
    """Read the rationale and the (text, label) pairs from a model's answer.

    Labels are matched case-insensitively to the offered labels; entities
    with any other label, or with no usable text, are dropped and counted.
    """
    counts = counts if counts is not None else Counter()
    rationale, answer = split_rationale(output)
    value = parse_json_answer(answer, counts)
    if value is None:
        # No JSON at all: garbage, nothing after the reasoning, or reasoning
        # cut off by the token limit before any answer.
        counts["unparseable"] += 1
        return rationale, []
    match = LabelMatcher(labels)
    entities: List[Tuple[str, str]] = []
    for text, label in _entity_items(value):
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            text = str(text)
        if not isinstance(text, str) or not text.strip():
            counts["entity_without_text"] += 1
            continue
        name = match(label)
        if name is None:
            counts["unknown_label"] += 1
            continue
        if name != label:
            counts["label_respelled"] += 1
        entities.append((text.strip(), name))
    return rationale, entities
