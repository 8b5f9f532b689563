"""How sure a model was of each entity it wrote: the geometric mean probability
of the tokens that wrote the entity's string, found in the answer in order."""

import bisect
import json
import math
from typing import Any, Dict, Optional, Sequence, Tuple

from ..answers import TokenScore


class _TokenIndex:
    """An answer's token scores, searchable by character span in logarithmic
    time (their starts and ends are in order, as every backend writes them)."""

    def __init__(self, token_scores: Sequence[TokenScore]):
        self.starts = [s for s, _, _ in token_scores]
        self.ends = [e for _, e, _ in token_scores]
        self.logprobs = [lp for _, _, lp in token_scores]

    def score(self, start: int, end: int) -> Optional[float]:
        """The geometric mean probability of the tokens overlapping [start, end)."""
        first = bisect.bisect_right(self.ends, start)  # the first token ending after `start`
        last = bisect.bisect_left(self.starts, end)  # past the last token starting before `end`
        logprobs = self.logprobs[first:last]
        if not logprobs:
            return None
        return math.exp(sum(logprobs) / len(logprobs))


def span_score(answer: Any, start: int, end: int) -> Optional[float]:
    """The geometric mean probability of the tokens overlapping answer[start:end]."""
    return _TokenIndex(getattr(answer, "token_scores", ())).score(start, end)


def entity_scores(answer: Any, entities: Sequence[Tuple[str, str]], start: int = 0) -> Dict[Tuple[str, str], float]:
    """A score for each (text, label) an entity-list answer wrote, found as a JSON
    string in the answer in order (after `start`, say the end of the reasoning);
    keyed by (lower-cased text, label). Empty when the answer has no scores."""
    if not getattr(answer, "token_scores", ()):
        return {}
    index = _TokenIndex(answer.token_scores)  # once per answer, not per entity
    scores: Dict[Tuple[str, str], float] = {}
    pos = start
    for text, label in entities:
        for written in (json.dumps(text, ensure_ascii=False), json.dumps(text)):
            found = answer.find(written, pos)
            if found != -1:
                score = index.score(found + 1, found + len(written) - 1)
                if score is not None:
                    key = (text.lower(), label)
                    scores[key] = max(score, scores.get(key, 0.0))
                pos = found + len(written)
                break
    return scores
