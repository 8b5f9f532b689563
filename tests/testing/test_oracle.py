"""The oracle runs the whole parse-and-align path on the real shared test sets."""

import json

import pytest
import spacy
from spacy.cli.evaluate import evaluate as spacy_evaluate

from spacy_recot.chunks import Chunk
from spacy_recot.conll import convert, labels_file
from spacy_recot.evaluation import evaluate_dataset, read_examples

from ..conftest import GNER, GNER_SETS, requires_data

pytestmark = requires_data(GNER)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    paths = {}
    for name in GNER_SETS:
        paths[name] = out / f"{name}.spacy"
        convert(GNER / name / "test.txt", paths[name])
    return paths


def oracle_nlp(path, output_format="bio", noise=None):
    prompt = "spacy_recot.GNERPrompt.v1" if output_format == "bio" else "spacy_recot.EntityListPrompt.v1"
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "recot_ner",
        config={
            "labels": json.loads(labels_file(path).read_text()),
            "model": {
                "@misc": "spacy_recot.Oracle.v1",
                "gold": str(path),
                "output_format": output_format,
                "noise": noise or {},
            },
            "prompt": {"@misc": prompt},
        },
    )
    return nlp


@pytest.mark.parametrize("name", GNER_SETS)
def test_spacy_evaluate_gives_100(name, corpus, tmp_path):
    nlp = oracle_nlp(corpus[name])
    nlp.to_disk(tmp_path / "oracle")
    scores = spacy_evaluate(str(tmp_path / "oracle"), corpus[name], silent=True)
    assert scores["ents_f"] == 1.0


def test_spacy_evaluate_cli_prints_100(corpus, tmp_path):
    import subprocess
    import sys

    oracle_nlp(corpus["crossner_ai"]).to_disk(tmp_path / "oracle")
    out = subprocess.run(
        [sys.executable, "-m", "spacy", "evaluate", str(tmp_path / "oracle"), str(corpus["crossner_ai"])],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "NER F" in out and "100.00" in out.split("NER F")[1].splitlines()[0]


def test_entity_list_format_is_near_perfect(corpus):
    # The entity-list format cannot say which occurrence of a repeated string
    # is meant, so a few spans are ambiguous: exact F stays above 99.8.
    nlp = oracle_nlp(corpus["crossner_politics"], "entities")
    res = evaluate_dataset(nlp, read_examples(nlp, corpus["crossner_politics"]), "recot_ner")
    assert res["ents_f"] > 0.998
    assert res["normalized"]["f"] == 1.0


@pytest.mark.parametrize(
    "noise,low,high",
    [
        ({"lowercase": 1.0}, 1.0, 1.0),
        ({"sentencepiece": 1.0}, 0.99, 1.0),
        ({"drop_word": 1.0}, 0.85, 0.97),
        ({"insert_word": 1.0}, 0.99, 1.0),
    ],
)
def test_noise_costs_what_it_should(noise, low, high, corpus):
    nlp = oracle_nlp(corpus["crossner_ai"], noise=noise)
    res = evaluate_dataset(nlp, read_examples(nlp, corpus["crossner_ai"]), "recot_ner")
    assert low <= res["ents_f"] <= high
    assert res["counts"] or noise == {"lowercase": 1.0}


def test_unknown_text_is_a_clear_error(corpus):
    nlp = oracle_nlp(corpus["crossner_ai"])
    with pytest.raises(ValueError, match="no gold annotation"):
        nlp("A sentence that is not in the data.")


def test_bad_oracle_config():
    with pytest.raises(ValueError, match="noise modes"):
        spacy.blank("en").add_pipe(
            "recot_ner",
            config={
                "labels": ["x"],
                "model": {"@misc": "spacy_recot.Oracle.v1", "gold": "x.spacy", "noise": {"typo": 1.0}},
            },
        )
    with pytest.raises(
        ValueError, match="asks for 'bio' output, but the model backend .* writes only 'entities' output"
    ):
        spacy.blank("en").add_pipe(
            "recot_ner",
            config={
                "labels": ["x"],
                "prompt": {"@misc": "spacy_recot.ReCoTPrompt.v1"},
                "model": {"@misc": "spacy_recot.Oracle.v1", "gold": "x.spacy", "output_format": "entities"},
            },
        )


def test_entities_on_window_cuts_are_found_whole(tmp_path):
    """A long doc without sentence boundaries is cut into overlapping windows:
    every gold entity comes back whole, also those a cut goes through."""
    from spacy.tokens import DocBin

    nlp = spacy.blank("en")
    words = []
    for i in range(12):
        words += ["Barack", "Obama", "met", f"x{i}", "in", "New", "York", "City", "today"]
    doc = nlp(" ".join(words))
    ents = []
    for i, tok in enumerate(doc):
        if tok.text == "Barack":
            ents.append(doc[i : i + 2])
            ents[-1].label_ = "person"
        if tok.text == "New":
            ents.append(doc[i : i + 3])
            ents[-1].label_ = "location"
    doc.ents = ents
    DocBin(docs=[doc]).to_disk(tmp_path / "gold.spacy")
    found = {}
    for overlap in (0, 4):
        nlp2 = spacy.blank("en")
        pipe = nlp2.add_pipe(
            "recot_ner",
            config={
                "labels": ["person", "location"],
                "window_overlap": overlap,
                "store_io": True,
                "model": {"@misc": "spacy_recot.Oracle.v1", "gold": str(tmp_path / "gold.spacy")},
            },
        )
        pipe.initialize()
        pipe.model.max_input_tokens = len(pipe.prompt.render(Chunk("", [], []), pipe.labels).split()) + 2 + 10
        out = nlp2(doc.text)
        assert len(out.user_data["recot"]["recot_ner"]["io"]) > 5
        found[overlap] = [(e.start_char, e.end_char, e.label_) for e in out.ents]
    gold = [(e.start_char, e.end_char, e.label_) for e in doc.ents]
    assert found[4] == gold
    assert found[0] != gold  # without overlap, cuts through entities lose them


@requires_data(GNER)
def test_evaluate_shows_the_model_the_datasets_own_words(corpus):
    """The papers' protocol: prompts hold the CoNLL words, not spaCy's re-tokenization."""
    from spacy_recot.conll import read_conll

    sentences = list(read_conll(GNER / "crossner_ai" / "test.txt"))
    nlp = oracle_nlp(corpus["crossner_ai"])
    pipe = nlp.get_pipe("recot_ner")
    pipe.store_io = True
    reference = read_examples(nlp, corpus["crossner_ai"], tokenization="reference")
    retokenized = read_examples(nlp, corpus["crossner_ai"], tokenization="pipeline")
    assert [[t.text for t in eg.predicted] for eg in reference] == [s.words for s in sentences]
    assert sum([t.text for t in eg.predicted] != s.words for eg, s in zip(retokenized, sentences)) > 10
    res = evaluate_dataset(nlp, reference, "recot_ner")
    for eg, sent in zip(reference, sentences):
        prompt = eg.predicted.user_data["recot"]["recot_ner"]["io"][0]["prompt"]
        assert prompt.endswith("Sentence: " + " ".join(sent.words))
    assert res["ents_f"] == 1.0
