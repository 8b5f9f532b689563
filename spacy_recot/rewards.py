"""GRPO rewards for ReasoningNER: span F1 and schema validity, with TRL's signature.

TRL 1.x calls a reward function with the keyword arguments `prompts`,
`completions`, `completion_ids` and every column of the dataset, and wants one
float per completion. Both rewards read an answer exactly as the component
does (`spacy_recot.tasks.read_entities`): the F1 reward places each entity
string in the sentence, so an entity that is not in the sentence earns
nothing, and scores the papers' normalized (text, label) pairs.

    GRPOTrainer(..., reward_funcs=[f1_reward, schema_reward], args=GRPOConfig(reward_weights=[10, 1]))

Differences from ReasoningNER's reference rewards, on purpose: a well-formed
answer with no entities for a sentence with none scores F1 1.0 (the reference
gives 0, which punishes a correct empty answer; `empty_gold_reward=0.0`
restores it), while an answer with no readable JSON, or whose entries were all
dropped, scores 0 whatever the gold;
and the F1 reward reads repaired JSON as the component does, while the schema
reward only counts JSON that parses as written.
"""

import json
import re
from collections import Counter
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from .chunks import Chunk
from .metrics import normalize
from .tasks import read_entities
from .tasks.json_answer import FENCE_RE
from .tasks.think import split_rationale

# ReasoningNER's weights: F1 : schema = 10 : 1.
REWARD_WEIGHTS = (10.0, 1.0)
ANSWER_TAG_RE = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL)


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, or (conversational datasets) a list
    of messages whose assistant contents are joined."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content") or "")
    if isinstance(completion, (list, tuple)):
        parts = [
            completion_text(m)
            for m in completion
            if not isinstance(m, dict) or m.get("role", "assistant") == "assistant"
        ]
        return "".join(parts)
    return ""


def answer_text(completion: Any) -> str:
    """The answer after the reasoning: the text after `</think>`, or inside
    `<answer>...</answer>`, or inside a JSON fence, stripped."""
    _, answer = split_rationale(completion_text(completion))
    tagged = ANSWER_TAG_RE.search(answer)
    if tagged:
        answer = tagged.group(1)
    fenced = FENCE_RE.search(answer)
    if fenced:
        answer = fenced.group(1)
    return answer.strip()


def entity_pairs(entities: Any) -> Set[Tuple[str, str]]:
    """Normalized (text, label) pairs of a gold entity list: `[{"text", "label"}]`,
    `[[text, label]]` or ReasoningNER's `{label: [text, ...]}`."""
    pairs: Set[Tuple[str, str]] = set()
    if isinstance(entities, str):
        try:
            entities = json.loads(entities)
        except ValueError:
            return pairs
    if isinstance(entities, dict):
        entities = entities.get("entities", entities)
    if isinstance(entities, dict):
        items: Iterable[Any] = [(t, label) for label, texts in entities.items() for t in (texts or [])]
    else:
        items = entities or []
    for item in items:
        if isinstance(item, dict):
            text, label = item.get("text"), item.get("label", item.get("type"))
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            text, label = item
        else:
            continue
        if isinstance(text, str) and isinstance(label, str) and normalize(text):
            pairs.add((normalize(text), normalize(label)))
    return pairs


def _labels(schema: Any, gold: Set[Tuple[str, str]]) -> List[str]:
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError:
            schema = [schema]
    if isinstance(schema, (list, tuple)) and all(isinstance(label, str) for label in schema):
        return list(schema)
    return sorted({label for _, label in gold})


def predicted_pairs(completion: Any, sentence: Optional[str], labels: Sequence[str]) -> Optional[Set[Tuple[str, str]]]:
    """The normalized (text, label) pairs an answer gives, read as the component
    reads it (with a sentence, only strings found in it count); None when the
    answer says nothing readable: no JSON, or entries that were all dropped
    (unknown labels, no text, strings not in the sentence)."""
    from .tasks.json_answer import parse_entity_list

    counts: Counter = Counter()
    text = completion_text(completion)
    chunk = Chunk.from_text(sentence) if sentence is not None else None
    if chunk is not None and chunk.words:
        reading = read_entities(chunk, text, labels)
        counts = reading.counts
        spans = reading.spans
        pairs = {(normalize(chunk.text[s:e]), normalize(label)) for s, e, label in spans if normalize(chunk.text[s:e])}
    else:
        _, items = parse_entity_list(text, labels, counts)
        pairs = {(normalize(t), normalize(label)) for t, label in items if normalize(t)}
    dropped = sum(counts[k] for k in ("unknown_label", "entity_without_text", "not_found"))
    if counts["unparseable"] or (not pairs and dropped):
        return None
    return pairs


def f1(pred: Optional[Set[Tuple[str, str]]], gold: Set[Tuple[str, str]], empty_gold_reward: float = 1.0) -> float:
    """Set F1 of two pair sets; `empty_gold_reward` when both are empty; 0 for
    an answer that says nothing readable (`pred` None)."""
    if pred is None:
        return 0.0
    if not gold and not pred:
        return empty_gold_reward
    tp = len(pred & gold)
    if not tp:
        return 0.0
    p, r = tp / len(pred), tp / len(gold)
    return 2 * p * r / (p + r)


def f1_reward(
    completions: Sequence[Any],
    entities: Sequence[Any],
    schema: Optional[Sequence[Any]] = None,
    sentence: Optional[Sequence[str]] = None,
    empty_gold_reward: float = 1.0,
    **kwargs: Any,
) -> List[float]:
    """Span F1 of each answer against the gold entities, in [0, 1].

    completions: Strings or message lists (conversational datasets).
    entities: The dataset column of gold entities, one list per completion.
    schema: The dataset column of offered labels (answers with other labels
        score nothing); default: the gold labels.
    sentence: The dataset column of sentences: entity strings must be found
        in them, as the component finds them.
    empty_gold_reward (float): The reward when gold and answer are both empty
        (1.0; ReasoningNER's reference gives 0.0).
    """
    rewards: List[float] = []
    for i, completion in enumerate(completions):
        gold = entity_pairs(entities[i])
        labels = _labels(schema[i] if schema is not None else None, gold)
        text = sentence[i] if sentence is not None else None
        rewards.append(f1(predicted_pairs(completion, text, labels), gold, empty_gold_reward))
    return rewards


def schema_valid(completion: Any, schema: Any) -> bool:
    """True only if the answer parses as JSON as written (no repair), has the
    shape `{"entities": {label: [string, ...]}}`, and every label is in the schema."""
    try:
        value = json.loads(answer_text(completion))
    except (ValueError, RecursionError):
        return False
    labels = set(_labels(schema, set()))
    if not isinstance(value, dict) or not isinstance(value.get("entities"), dict):
        return False
    for label, texts in value["entities"].items():
        if label not in labels or not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return False
    return True


def schema_reward(completions: Sequence[Any], schema: Sequence[Any], **kwargs: Any) -> List[float]:
    """1.0 for an answer that is valid JSON as written with only schema labels, else 0.0."""
    return [1.0 if schema_valid(c, schema[i]) else 0.0 for i, c in enumerate(completions)]


def weighted_reward(completion: Any, row: Dict[str, Any], weights: Sequence[float] = REWARD_WEIGHTS) -> float:
    """The combined reward of one completion for one dataset row (for reports)."""
    f = f1_reward([completion], [row["entities"]], [row.get("schema")], [row.get("sentence")])[0]
    s = schema_reward([completion], [row.get("schema")])[0]
    return weights[0] * f + weights[1] * s
