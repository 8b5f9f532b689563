"""Entity scores from token log-probabilities, and the one check of scores that
come from outside (a server, a cache file)."""

import math

import pytest

from spacy_recot.answers import Answer, checked_token_scores
from spacy_recot.tasks.confidence import entity_scores, span_score


def test_span_score_is_the_geometric_mean_of_the_overlapping_tokens():
    answer = Answer.scored('{"a": ["Obama"]}', [(0, 8, -0.5), (8, 10, -0.1), (10, 13, -0.3), (13, 16, -0.9)])
    assert span_score(answer, 8, 13) == pytest.approx(math.exp(-0.2))
    assert span_score(answer, 9, 11) == pytest.approx(math.exp(-0.2))  # any overlap counts
    assert span_score(answer, 16, 16) is None and span_score("no scores", 0, 2) is None


def test_entity_scores_on_a_huge_answer_cost_little_per_entity():
    """One token per character of a 1 MB answer: each entity's score is looked up,
    not computed over every token (that took 11 s for these 600 entities here)."""
    text = '{"person": [' + ", ".join(['"Obama"'] * ((1 << 20) // 9)) + "]}"
    answer = Answer.scored(text, [(i, i + 1, -0.1 if text[i] != "O" else -0.7) for i in range(len(text))])
    scores = entity_scores(answer, [("Obama", "person")] * 300 + [("Nobody", "person")] * 300)
    assert scores == {("obama", "person"): pytest.approx(math.exp(-0.22))}


@pytest.mark.parametrize(
    "scores, ok",
    [
        ([(0, 3, -0.1), (3, 6, 0.0), (6, 6, -math.inf)], True),
        ([], True),
        ([(0, 3, float("nan"))], False),
        ([(0, 3, 0.5)], False),
        ([(0, 3, True)], False),
        ([(0, 7, -0.1)], False),
        ([(3, 6, -0.1), (0, 3, -0.1)], False),
        ([(0, 3)], False),
        ([(0.0, 3, -0.1)], False),
        ("0 3 -0.1", False),
    ],
)
def test_checked_token_scores_take_only_what_a_backend_writes(scores, ok):
    checked = checked_token_scores(6, scores)
    assert (checked is not None) == ok
    if ok:
        assert checked == tuple(scores)
