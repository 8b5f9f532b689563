"""Pipelines saved by release 0.1 (tests/fixtures/release_0_1, made by
tests/fixtures/make_release_pipelines.py) load with this code and give the
entities they gave then."""

import json
from pathlib import Path

import pytest
import spacy

RELEASE = Path(__file__).parent / "fixtures" / "release_0_1"


@pytest.mark.parametrize("name", sorted(p.name for p in RELEASE.iterdir() if (p / "config.cfg").exists()))
def test_release_pipeline_gives_the_same_entities(name):
    nlp = spacy.load(RELEASE / name)
    expected = json.loads((RELEASE / name / "expected.json").read_text(encoding="utf-8"))
    docs = list(nlp.pipe([case["text"] for case in expected]))
    assert [[[e.start_char, e.end_char, e.label_] for e in doc.ents] for doc in docs] == [
        case["entities"] for case in expected
    ]
