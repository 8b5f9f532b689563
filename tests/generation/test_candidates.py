"""Prompt lookup: the guesses the greedy loop checks in the same pass."""

from spacy_recot.generation.candidates import lookup_draft


def test_lookup_draft_continues_the_latest_earlier_occurrence():
    context = [5, 1, 2, 3, 9, 1, 2, 3, 7, 8, 4, 1, 2, 3]
    # The last 3 tokens (1 2 3) occurred last at 5..7, followed by 7 8 4 1.
    assert lookup_draft(context, 4) == [7, 8, 4, 1]
    assert lookup_draft(context, 1) == [7]
    # No 3- or 2-gram match: the last token alone.
    assert lookup_draft([4, 6, 9, 6], 2) == [9, 6]
    assert lookup_draft([1, 2, 3], 5) == []
    assert lookup_draft([], 5) == [] and lookup_draft([1], 5) == []
