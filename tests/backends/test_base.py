"""The backend base: what every backend shares."""

import pytest

from spacy_recot.backends.base import Backend
from spacy_recot.chunks import Chunk, Request
from spacy_recot.tasks.grammar import EntityListConstraint


def test_a_batch_is_free_text_only_when_no_request_has_a_constraint():
    chunk = Chunk.from_text("Barack Obama visited Paris.")
    entities = Request("p", chunk, ["person"], 10, EntityListConstraint(("person",), chunk))
    definition = Request("define person", Chunk("", [], []))
    assert Backend.free_text([definition, definition])
    assert not Backend.free_text([entities])
    with pytest.raises(ValueError, match="mixes requests with and without a constraint"):
        Backend.free_text([entities, definition])
