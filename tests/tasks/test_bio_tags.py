from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from spacy_recot.tasks.bio_tags import (
    align_tags,
    contains_in_order,
    lcs_match,
    normalize_tags,
    parse_bio,
    tags_to_spans,
)

LABELS = ["person", "location", "programming language"]


def test_parse_plain():
    words, tags = parse_bio("Barack(B-person) Obama(I-person) visited(O) Paris(B-location)")
    assert words == ["Barack", "Obama", "visited", "Paris"]
    assert tags == ["B-person", "I-person", "O", "B-location"]


def test_parse_missing_and_doubled_spaces():
    words, tags = parse_bio("forces(O).(O)   NATO(B-organization)  x(O)")
    assert words == ["forces", ".", "NATO", "x"]
    assert tags == ["O", "O", "B-organization", "O"]


def test_parse_words_with_parentheses():
    words, tags = parse_bio("(1999)(O) f(x)(O) (O)(O) Python(B-programming language)")
    assert words == ["(1999)", "f(x)", "(O)", "Python"]
    assert tags == ["O", "O", "O", "B-programming language"]


def test_parse_truncated_and_garbage_counted():
    counts = Counter()
    words, tags = parse_bio("Barack(B-person) Oba", counts)
    assert words == ["Barack"] and tags == ["B-person"]
    assert counts["untagged_tail_words"] == 1
    counts = Counter()
    assert parse_bio("<pad> ))((( B- I-", counts) == ([], [])
    assert counts["untagged_tail_words"] == 4


def test_parse_untagged_words_before_a_tag():
    counts = Counter()
    words, tags = parse_bio("New York(B-location)", counts)
    assert words == ["New", "York"] and tags == ["O", "B-location"]
    assert counts["untagged_words"] == 1


def test_normalize_tags_unknown_respelled_orphans():
    counts = Counter()
    tags = normalize_tags(
        ["B-Person", "I-person", "O", "I-location", "B-animal", "I-programming  language", "B-", "X-person"],
        LABELS,
        counts,
    )
    assert tags == ["B-person", "I-person", "O", "B-location", "O", "B-programming language", "O", "O"]
    assert counts["unknown_label"] == 3
    assert counts["orphan_inside"] == 2
    assert counts["label_respelled"] == 2


def test_align_exact():
    counts = Counter()
    assert align_tags(["A", "b"], ["a", "B"], ["B-person", "O"], counts) == ["B-person", "O"]
    assert not counts


def test_align_subsequence_missing_word():
    counts = Counter()
    tags = align_tags(
        ["Barack", "Obama", "visited", "Paris"], ["Barack", "visited", "Paris"], ["B-person", "O", "B-location"], counts
    )
    assert tags == ["B-person", "O", "O", "B-location"]
    assert counts["aligned_subsequence"] == 1 and counts["input_words_unmatched"] == 1


def test_align_lcs_inserted_and_substituted_words():
    counts = Counter()
    raw = ["The", "café", "in", "Paris", "opened"]
    pred = ["The", "cafe", "nice", "in", "Paris", "opened", "today"]
    tags = align_tags(raw, pred, ["O", "B-location", "O", "O", "B-location", "O", "O"], counts)
    assert tags[3] == "B-location"
    assert counts["aligned_lcs"] == 1


def test_align_repairs_respelled_word_by_position():
    counts = Counter()
    tags = align_tags(
        ["Tōkyō", "is", "big", "x"], ["Tokyo", "is", "big", "y", "z"], ["B-location", "O", "O", "O", "O"], counts
    )
    assert tags[0] == "B-location"
    assert counts["words_paired_by_position"] == 1


def test_align_repairs_lost_punctuation_loosely():
    counts = Counter()
    raw = ["in", "U.S.", "today", "we", "go"]
    pred = ["in", "us", "extra", "today", "we", "go"]
    tags = align_tags(raw, pred, ["O", "B-location", "O", "O", "O", "O"], counts)
    assert tags[1] == "B-location"
    assert counts["words_paired_loosely"] == 1


def test_lcs_match_is_a_longest_common_subsequence():
    raw = list("abcbdab")
    pred = list("bdcaba")
    match = lcs_match(raw, pred)
    pairs = [(i, j) for i, j in enumerate(match) if j != -1]
    assert len(pairs) == 4  # the LCS of these classic strings has length 4
    assert all(raw[i] == pred[j] for i, j in pairs)
    assert all(j1 < j2 for (_, j1), (_, j2) in zip(pairs, pairs[1:]))


def test_contains_in_order():
    assert contains_in_order(["a", "b", "c"], ["a", "c"]) == [0, -1, 1]
    assert contains_in_order(["a", "b"], ["b", "a"]) is None


def test_tags_to_spans():
    assert tags_to_spans(["B-a", "I-a", "O", "B-b", "B-b", "I-c"]) == [
        (0, 2, "a"),
        (3, 4, "b"),
        (4, 5, "b"),
        (5, 6, "c"),
    ]


words_st = st.lists(
    st.text(min_size=1, max_size=6).filter(lambda w: not any(c.isspace() for c in w)), min_size=0, max_size=12
)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=200), raw=words_st)
def test_any_output_gives_valid_tags(text, raw):
    counts = Counter()
    words, tags = parse_bio(text, counts)
    assert len(words) == len(tags)
    aligned = normalize_tags(align_tags(raw, words, tags, counts), LABELS, counts)
    assert len(aligned) == len(raw)
    for s, e, label in tags_to_spans(aligned):
        assert 0 <= s < e <= len(raw) and label in LABELS


@settings(max_examples=200, deadline=None)
@given(raw=words_st, data=st.data())
def test_lcs_matches_the_dynamic_programme(raw, data):
    pred = data.draw(st.lists(st.sampled_from(raw or ["x"]), max_size=12))
    match = lcs_match(raw, pred)
    pairs = [(i, j) for i, j in enumerate(match) if j != -1]
    assert all(raw[i] == pred[j] for i, j in pairs)
    assert all(j1 < j2 for (_, j1), (_, j2) in zip(pairs, pairs[1:]))
    # length equals the textbook O(nm) LCS
    n, m = len(raw), len(pred)
    dp = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n):
        for j in range(m):
            dp[i + 1][j + 1] = dp[i][j] + 1 if raw[i] == pred[j] else max(dp[i][j + 1], dp[i + 1][j])
    assert len(pairs) == dp[n][m]
