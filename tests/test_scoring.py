import spacy
from spacy.training import Example

from spacy_recot.scoring import average_f, normalize, normalized_prf


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
