"""The public readers: one reading of an answer for inference, training and rewards."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spacy_recot.chunks import Chunk
from spacy_recot.tasks import item_limit, read_answer, read_bio, read_entities

LABELS = ["person", "location"]
CHUNK = Chunk.from_words(["Barack", "Obama", "visited", "Paris", "."])


def test_read_bio():
    reading = read_bio(CHUNK, "Barack(B-person) Obama(I-person) visited(O) Paris(B-Location) .(O)", LABELS)
    assert reading.spans == [(0, 12, "person"), (21, 26, "location")]
    assert reading.counts == {"label_respelled": 1} and reading.rationale == ""


def test_read_entities_with_rationale():
    answer = '<think>\nObama is a person.\n</think>\n{"entities": {"person": ["Barack Obama"], "LOCATION": ["Paris"]}}'
    reading = read_entities(CHUNK, answer, LABELS)
    assert reading.spans == [(0, 12, "person"), (21, 26, "location")]
    assert reading.rationale == "Obama is a person."
    assert reading.entities == [("Barack Obama", "person"), ("Paris", "location")]


def test_read_answer_dispatches_and_ignores_the_other_formats_options():
    bio = read_answer("bio", CHUNK, "Barack(B-person) Obama(I-person)", LABELS, all_occurrences=True)
    assert bio.spans == [(0, 12, "person")]
    ents = read_answer("entities", CHUNK, '{"person": ["Obama"]}', LABELS, written_words=["x"])
    assert ents.spans == [(7, 12, "person")]
    with pytest.raises(ValueError, match="Unknown output format 'xml'"):
        read_answer("xml", CHUNK, "", LABELS)


def test_a_chunk_of_a_longer_text_maps_to_absolute_offsets():
    text = "Intro words here. Barack Obama visited Paris ."
    start = text.index("Barack")
    words = text[start:].split()
    offsets, pos = [], start
    for w in words:
        s = text.index(w, pos)
        offsets.append((s, s + len(w)))
        pos = s + len(w)
    chunk = Chunk(text=text, words=words, offsets=offsets)
    reading = read_entities(chunk, '{"entities": {"location": ["Paris"], "person": ["Obama"]}}', LABELS)
    assert sorted(reading.spans) == [
        (text.index("Obama"), text.index("Obama") + 5, "person"),
        (text.index("Paris"), text.index("Paris") + 5, "location"),
    ]


def test_case_insensitive_match_is_exact_where_lower_case_changes_length():
    # "İ".lower() is two characters: offsets found in a lower-cased copy drift.
    words = ["İİİ", "İzmir", "and", "PARIS", "."]
    chunk = Chunk.from_words(words)
    reading = read_entities(chunk, '{"location": ["paris", "İzmir"]}', LABELS)
    found = {chunk.text[s:e] for s, e, _ in reading.spans}
    assert found == {"PARIS", "İzmir"}
    assert reading.counts["case_insensitive_match"] == 1


@settings(max_examples=300, deadline=None)
@given(
    words=st.lists(
        st.text(min_size=1, max_size=6).filter(lambda w: not any(c.isspace() for c in w)), min_size=1, max_size=8
    ),
    answer=st.text(max_size=80),
    fmt=st.sampled_from(["bio", "entities"]),
)
def test_any_answer_reads_to_spans_inside_the_chunk(words, answer, fmt):
    chunk = Chunk.from_words(words)
    reading = read_answer(fmt, chunk, answer, LABELS)
    for start, end, label in reading.spans:
        assert chunk.start_char <= start < end <= chunk.end_char and label in LABELS


def test_seeded_fuzz_run_finds_no_exception_warning_or_bad_span():
    """The benchmark (benchmarks/fuzz_readers.py) runs 100,000 answers per
    format; here a seeded slice of the same generators."""
    from benchmarks.fuzz_readers import run

    summary = run(3000, seed=7)
    for fmt in ("bio", "entities"):
        assert summary[fmt]["exceptions_or_invalid_spans"] == 0, summary[fmt]["failures"][:3]
        assert summary[fmt]["warnings"] == 0 and summary[fmt]["spans"] > 100


def test_a_huge_answer_reads_to_what_it_names_with_the_excess_counted():
    """A server may ignore max_tokens: 1 MB repeating one entity (or one tagged
    word) reads to the one span it names, and what was cut is counted (reading
    it all was quadratic: 4.6 s for 72 KB; benchmarks/huge_answers.py times each kind)."""
    mb = 1 << 20
    limit = item_limit(CHUNK)
    n = mb // len('"Obama", ')
    reading = read_entities(CHUNK, '{"entities": {"person": [' + ", ".join(['"Obama"'] * n) + "]}}", LABELS)
    assert reading.spans == [(7, 12, "person")]
    assert reading.counts == {"entities_cut": n - limit, "duplicate_entity": limit - 1}
    # The same key over and over: merged as the answer is parsed, not copied each time.
    n = mb // len('"person": ["Obama"], ')
    reading = read_entities(CHUNK, "{" + ", ".join(['"person": ["Obama"]'] * n) + "}", LABELS)
    assert reading.spans == [(7, 12, "person")] and reading.counts["entities_cut"] == n - limit
    n = mb // len("Obama(B-person) ")
    reading = read_bio(CHUNK, "Obama(B-person) " * n, LABELS)
    assert reading.spans == [(7, 12, "person")] and reading.counts["words_cut"] == n - limit


def test_a_repeated_entity_is_placed_once():
    chunk = Chunk.from_words(["Paris", "and", "Paris", "."])
    reading = read_entities(chunk, '{"location": ["Paris", "Paris", "Paris"]}', LABELS)
    assert reading.spans == [(0, 5, "location"), (10, 15, "location")]
    assert reading.counts == {"duplicate_entity": 1}
