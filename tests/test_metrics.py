import spacy
from spacy.training import Example

from spacy_recot.metrics import average_f, micro_f1, normalize, normalized_prf, paired_bootstrap, span_counts


def test_normalize():
    assert normalize("The  U.S. Army!") == "us army"
    assert normalize("An apple, a day") == "apple day"


def test_normalized_prf_uses_sets_per_sentence():
    nlp = spacy.blank("en")
    ref = nlp("the Paris and Paris")
    ref.ents = [ref.char_span(0, 9, "Location")]
    pred = nlp("the Paris and Paris")
    pred.ents = [pred.char_span(4, 9, "location"), pred.char_span(14, 19, "location")]
    scores = normalized_prf([Example(pred, ref)])
    # both predictions normalize to ("paris", "location"): one set element
    assert scores["p"] == 1.0 and scores["r"] == 1.0 and scores["f"] == 1.0
    assert average_f({"a": {"f": 1.0}, "b": {"f": 0.5}}) == 0.75


def test_paired_bootstrap_of_two_runs():
    assert span_counts([(0, 5, "person"), [6, 9, "location"]], [(0, 5, "person")]) == (1, 2, 1)
    assert micro_f1([(1, 2, 1), (0, 0, 1)]) == 0.5 and micro_f1([]) == 0.0
    a = [(0, 1, 1)] * 10 + [(1, 1, 1)] * 10
    assert paired_bootstrap(a, a, samples=200) == (0.0, 0.0)
    # b gets every sentence right: the whole interval is above 0, and the same seed gives the same interval.
    b = [(1, 1, 1)] * 20
    low, high = paired_bootstrap(a, b, samples=200, seed=3)
    assert 0 < low <= micro_f1(b) - micro_f1(a) <= high and (low, high) == paired_bootstrap(a, b, samples=200, seed=3)
    assert paired_bootstrap([], [], samples=0) == (0.0, 0.0)
