"""The component on the real seq2seq path: tiny T5 models built in the session."""

import warnings

import pytest
import spacy

from spacy_recot.backends import ModelLoadError
from spacy_recot.chunks import fitting_chunks

from .conftest import LABELS, reasoning_requests


def t5_nlp(path, **cfg):
    nlp = spacy.blank("en")
    config = {
        "labels": LABELS,
        "model": {"@misc": "spacy_recot.HFSeq2Seq.v2", "name_or_path": str(path)},
        "prompt": {"@misc": "spacy_recot.ReCoTPrompt.v1"},
    }
    config.update(cfg)
    nlp.add_pipe("recot_ner", config=config)
    return nlp


def ents(doc):
    return [(e.text, e.label_, e.start_char, e.end_char) for e in doc.ents]


def test_trained_model_sets_entities(trained_t5_dir):
    nlp = t5_nlp(trained_t5_dir, store_io=True)
    doc = nlp("Barack Obama visited Paris.")
    assert ents(doc) == [("Barack Obama", "person", 0, 12), ("Paris", "location", 21, 26)]
    record = doc.user_data["recot"]["recot_ner"]
    assert record["entities"][0] == {"text": "Barack Obama", "label": "person", "start_char": 0, "end_char": 12}
    assert record["io"][0]["prompt"].endswith("Sentence: Barack Obama visited Paris .")
    assert "Obama(I-person)" in record["io"][0]["output"]


def test_pipe_batches_and_keeps_order_and_empty_docs(trained_t5_dir):
    nlp = t5_nlp(trained_t5_dir)
    texts = ["Angela Merkel met Macron in Berlin.", "", "   \n", "Barack Obama visited Paris."]
    docs = list(nlp.pipe(texts, batch_size=2))
    assert [d.text for d in docs] == texts
    assert ents(docs[0])[0][:2] == ("Angela Merkel", "person")
    assert ("Berlin", "location") in [e[:2] for e in ents(docs[0])]
    assert docs[1].ents == () and "recot" not in docs[1].user_data
    assert docs[2].ents == () and "recot" not in docs[2].user_data
    assert ents(docs[3])[0][:2] == ("Barack Obama", "person")


def test_long_doc_is_split_and_mapped_back(trained_t5_dir):
    nlp = t5_nlp(trained_t5_dir, store_io=True)
    nlp.add_pipe("sentencizer", first=True)
    pipe = nlp.get_pipe("recot_ner")
    pipe._ensure_loaded()
    from spacy_recot.chunks import Chunk

    overhead = pipe.model.count_tokens([pipe.prompt.render(Chunk("", [], []), pipe.labels)])[0]
    text = "Barack Obama visited Paris. Angela Merkel met Macron in Berlin."
    costs = [sum(pipe.model.count_tokens([t.text for t in sent])) for sent in nlp(text).sents]
    # room for the longer sentence, not for both
    pipe.model.max_input_tokens = overhead + 2 + max(costs)
    assert max(costs) < sum(costs)
    doc = nlp(text)
    assert len(doc.user_data["recot"]["recot_ner"]["io"]) == 2
    found = ents(doc)
    assert ("Barack Obama", "person", 0, 12) in found
    assert ("Berlin", "location", text.index("Berlin"), text.index("Berlin") + 6) in found
    for _, _, s, e in found:
        assert 0 <= s < e <= len(text)


def test_random_model_output_never_breaks_the_doc(tiny_t5_dir):
    nlp = t5_nlp(
        tiny_t5_dir,
        store_io=True,
        model={
            "@misc": "spacy_recot.HFSeq2Seq.v2",
            "name_or_path": str(tiny_t5_dir),
            "max_new_tokens": 30,
            "generation": {"do_sample": True},
        },
    )
    for doc in nlp.pipe(["Barack Obama visited Paris.", "A second, rather different sentence (with brackets)."]):
        for ent in doc.ents:
            assert ent.label_ in LABELS and 0 <= ent.start_char < ent.end_char <= len(doc.text)
        assert "counts" in doc.user_data["recot"]["recot_ner"]


def test_progress_bar(trained_t5_dir, capsys):
    nlp = t5_nlp(trained_t5_dir, show_progress=True)
    list(nlp.pipe(["Barack Obama visited Paris."] * 3))
    err = capsys.readouterr().err
    assert "recot_ner: " in err and "3prompt" in err.replace(" ", "")


def test_unknown_model_path_names_the_key(tmp_path):
    nlp = t5_nlp(tmp_path / "no-such-model")
    with pytest.raises(
        ModelLoadError, match=r"components.recot_ner.model: No model folder at .*no-such-model.*model.name_or_path"
    ):
        nlp("Hello")
    with pytest.raises(ModelLoadError, match="Hugging Face Hub could not provide it"):
        t5_nlp("no-such-org/no-such-model")("Hello")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="no loadable model"):
        t5_nlp(empty).initialize()


@pytest.mark.parametrize(
    "cfg,match",
    [
        ({"labels": ["PER", "per"]}, "'PER' and 'per' differ only in case"),
        (
            {"labels": ["unit (SI)"], "model": {"@misc": "spacy_recot.HFSeq2Seq.v2", "name_or_path": "x"}},
            "cannot carry",
        ),
        (
            {"labels": ["a"], "prompt": {"@misc": "spacy_recot.GNERPrompt.v1"}},
            "prompt BIOPrompt asks for 'bio' output, but the model backend PackagedCausalBackend writes only 'entities'",
        ),
        (
            {
                "labels": ["a"],
                "model": {
                    "@misc": "spacy_recot.HFSeq2Seq.v2",
                    "name_or_path": "x",
                    "generation": {"max_new_tokens": 9},
                },
            },
            "set model.max_new_tokens instead",
        ),
        ({"labels": ["a"], "batch_size": 0}, "batch_size must be an integer of at least 1"),
        ({"labels": ["a"], "window_overlap": -1}, "window_overlap"),
        ({"labels": "person"}, "recot_ner -> labels"),
        ({"labels": ["a", "a"]}, "more than once"),
        ({"labels": ["a"], "label_descriptions": {"b": "x"}}, "label_descriptions describes"),
        ({"labels": ["a"], "alignment_mode": "loose"}, "alignment_mode"),
    ],
)
def test_bad_config_fails_early(cfg, match):
    with pytest.raises(ValueError, match=match):
        spacy.blank("en").add_pipe("recot_ner", config=cfg)


def test_a_task_set_on_the_pipe_is_checked_like_the_configs():
    pipe = spacy.blank("en").add_pipe("recot_ner", config={"labels": ["unit (SI)"]})
    before = pipe.task
    with pytest.raises(ValueError, match="prompt BIOPrompt asks for 'bio' output"):
        pipe.prompt = spacy.util.registry.misc.get("spacy_recot.GNERPrompt.v1")()
    assert pipe.task is before
    pipe.prompt = spacy.util.registry.misc.get("spacy_recot.ZeroShotJSONPrompt.v1")(questions="per_label")
    assert pipe.task is pipe.prompt and pipe.task is not before


def test_empty_labels_fail_when_run_with_the_way_out():
    nlp = spacy.blank("en")
    nlp.add_pipe("recot_ner", config={"model": {"@misc": "spacy_recot.HFSeq2Seq.v2", "name_or_path": "x"}})
    with pytest.raises(ValueError, match="labels is empty: .*add_label.*initialize"):
        nlp("Barack Obama visited Paris.")


def test_initialize_sets_labels_and_loads(trained_t5_dir):
    nlp = t5_nlp(trained_t5_dir)
    nlp.initialize()
    pipe = nlp.get_pipe("recot_ner")
    assert pipe.model.is_loaded
    pipe.initialize(lambda: [], nlp=nlp, labels=["person"])
    assert pipe.labels == ["person"]
    assert all(e.label_ == "person" for e in nlp("Barack Obama visited Paris.").ents)


def test_spans_key_keeps_all_spans(trained_t5_dir):
    nlp = t5_nlp(trained_t5_dir, spans_key="recot")
    doc = nlp("Barack Obama visited Paris.")
    assert [s.text for s in doc.spans["recot"]] == [e.text for e in doc.ents]


def test_score_uses_spacys_scorer(trained_t5_dir):
    from spacy.training import Example

    nlp = t5_nlp(trained_t5_dir)
    ref = nlp.make_doc("Barack Obama visited Paris.")
    ref.ents = [ref.char_span(0, 12, "person"), ref.char_span(21, 26, "location")]
    scores = nlp.evaluate([Example(nlp.make_doc(ref.text), ref)])
    assert scores["ents_f"] == 1.0
    assert set(scores["ents_per_type"]) == {"person", "location"}


def test_record_is_json_and_survives_docbin(trained_t5_dir):
    import json

    from spacy.tokens import DocBin

    nlp = t5_nlp(trained_t5_dir, store_io=True)
    doc = nlp("Barack Obama visited Paris.")
    record = doc.user_data["recot"]["recot_ner"]
    assert json.loads(json.dumps(record)) == record
    (back,) = (
        DocBin(docs=[doc], store_user_data=True)
        .from_bytes(DocBin(docs=[doc], store_user_data=True).to_bytes())
        .get_docs(nlp.vocab)
    )
    # DocBin's msgpack gives lists back as tuples; the content is the same.
    assert json.loads(json.dumps(back.user_data["recot"]["recot_ner"])) == record


# -- the causal (ReasoningNER) path -------------------------------------------


def qwen_nlp(path, model=None, **cfg):
    nlp = spacy.blank("en")
    config = {
        "labels": LABELS,
        "model": {"@misc": "spacy_recot.HFCausal.v1", "name_or_path": str(path), **(model or {})},
        "prompt": {"@misc": "spacy_recot.ReasoningNERPrompt.v1"},
    }
    config.update(cfg)
    nlp.add_pipe("recot_ner", config=config)
    return nlp


@pytest.mark.parametrize("constrained", [False, True])
def test_reasoning_model_sets_entities_rationale_and_reasons(trained_qwen3_dir, constrained):
    nlp = qwen_nlp(trained_qwen3_dir, model={"constrained": constrained})
    docs = list(nlp.pipe(["Barack Obama visited Paris .", "Angela Merkel met Macron in Berlin ."]))
    assert ents(docs[0]) == [("Barack Obama", "person", 0, 12), ("Paris", "location", 21, 26)]
    assert [e.text for e in docs[1].ents] == ["Angela Merkel", "Macron", "Berlin"]
    record = docs[0].user_data["recot"]["recot_ner"]
    assert record["rationale"] == "Barack Obama is a person. Paris is a city, so a location."
    assert record["entities"][0]["reason"] == "Barack Obama is a person."
    assert record["entities"][1]["reason"] == "Paris is a city, so a location."
    assert record["counts"] == {}
    reasons = [e.get("reason") for e in docs[1].user_data["recot"]["recot_ner"]["entities"]]
    assert reasons == [
        "Angela Merkel and Macron are persons.",
        "Angela Merkel and Macron are persons.",
        "Berlin is a location.",
    ]


def test_reasoning_record_survives_docbin(trained_qwen3_dir):
    import json

    from spacy.tokens import DocBin

    nlp = qwen_nlp(trained_qwen3_dir, store_io=True)
    doc = nlp("Barack Obama visited Paris .")
    record = doc.user_data["recot"]["recot_ner"]
    assert json.loads(json.dumps(record)) == record
    assert record["io"][0]["prompt"].endswith("Sentence:\nBarack Obama visited Paris .")
    back = list(DocBin(docs=[doc], store_user_data=True).get_docs(nlp.vocab))[0]
    assert json.loads(json.dumps(back.user_data["recot"]["recot_ner"])) == record


def test_all_occurrences_and_nested_spans(trained_qwen3_dir):
    # The model answers {"person": ["Paris Hilton"], "location": ["Paris"]}.
    text = "Paris Hilton visited Paris ."
    once = qwen_nlp(trained_qwen3_dir, spans_key="all")(text)
    assert ents(once) == [("Paris Hilton", "person", 0, 12), ("Paris", "location", 21, 26)]
    every = qwen_nlp(trained_qwen3_dir, all_occurrences=True, spans_key="all", overlaps="longest")(text)
    # "Paris" also occurs inside "Paris Hilton": doc.ents keeps the longer span (overlaps = "longest"),
    # doc.spans keeps all three, the nested one included.
    assert ents(every) == ents(once)
    assert sorted((s.start_char, s.end_char, s.label_) for s in every.spans["all"]) == [
        (0, 5, "location"),
        (0, 12, "person"),
        (21, 26, "location"),
    ]
    assert every.user_data["recot"]["recot_ner"]["counts"]["dropped_overlapping"] == 1


def test_default_config_is_the_packaged_model_and_loads_nothing():
    nlp = spacy.blank("en")
    pipe = nlp.add_pipe("recot_ner", config={"labels": ["person"]})
    model = nlp.config["components"]["recot_ner"]["model"]
    # The packaged model with the shipped adapter merged at load; `adapter: null` is the zero-shot model.
    assert (model["@misc"], model["adapter"]) == ("spacy_recot.PackagedCausal.v4", "qwen2.5-coder-1.5b-crossner-sft")
    assert pipe.model.settings.adapter == "qwen2.5-coder-1.5b-crossner-sft"
    assert pipe.model.constrained and pipe.prompt.output_format == "entities"
    assert not pipe.model.is_loaded


def test_reasoning_ner_snippet_gets_the_verbatim_prompt():
    # spaCy merges a block into the default of the same name: the README's
    # snippet must still give ReasoningNER's own prompt and an unconstrained model.
    nlp = spacy.blank("en")
    pipe = nlp.add_pipe(
        "recot_ner",
        config={
            "labels": ["person"],
            "model": {"@misc": "spacy_recot.HFCausal.v1", "name_or_path": "some/model"},
            "prompt": {"@misc": "spacy_recot.ReasoningNERPrompt.v1"},
        },
    )
    assert pipe.prompt.example_labels == "placeholders" and pipe.prompt.drop_generic_labels
    assert not pipe.model.constrained and pipe.model.thinking is None


def test_long_doc_is_split_to_fit_the_entity_list_answer(trained_qwen3_dir):
    # 40 training sentences in one doc: the answer could not fit 120 new tokens.
    text = " ".join(["Barack Obama visited Paris ."] * 40)
    nlp = qwen_nlp(trained_qwen3_dir, model={"generation": {"max_new_tokens": 120, "do_sample": False}}, store_io=True)
    doc = nlp(text)
    io = doc.user_data["recot"]["recot_ner"]["io"]
    assert len(io) > 1
    pipe = nlp.get_pipe("recot_ner")
    room_out = pipe._limits().room_out
    for item in io:
        words = item["prompt"].split("Sentence:\n", 1)[1].split()
        assert sum(max(c, 1) + 1 for c in pipe.model.count_tokens(words)) <= room_out


def test_bio_output_budget_prices_the_dearest_tag(trained_t5_dir):
    """An entity-dense doc: every chunk's answer, every word an entity, fits max_new_tokens."""
    nlp = t5_nlp(
        trained_t5_dir,
        model={"@misc": "spacy_recot.HFSeq2Seq.v2", "name_or_path": str(trained_t5_dir), "max_new_tokens": 40},
    )
    pipe = nlp.get_pipe("recot_ner")
    pipe.initialize()
    doc = nlp.make_doc(" ".join(["Berlin"] * 60))
    chunks = fitting_chunks(doc, pipe._limits(), pipe.model.count_tokens, pipe.window_overlap)
    assert len(chunks) > 1
    for chunk in chunks:
        for label in LABELS:
            target = pipe.prompt.render_target(chunk, [(i, i + 1, label) for i in range(len(chunk.words))])
            assert len(pipe.model.tokenizer(target)["input_ids"]) <= 40


@pytest.mark.parametrize("constrained", [False, True])
def test_entities_get_a_score_from_token_probabilities_and_a_threshold(trained_qwen3_dir, constrained):
    from spacy_recot.answers import Answer

    nlp = qwen_nlp(trained_qwen3_dir, model={"constrained": constrained})
    doc = nlp("Barack Obama visited Paris .")
    entities = doc.user_data["recot"]["recot_ner"]["entities"]
    assert [e["text"] for e in entities] == ["Barack Obama", "Paris"]
    assert all(0.0 < e["score"] <= 1.0 for e in entities)
    # The model was trained on this answer: it is sure of it.
    assert min(e["score"] for e in entities) > 0.5
    # Where spaCy users look: on the span, and in the spans group's attrs (as spancat).
    assert [ent._.recot_score for ent in doc.ents] == [e["score"] for e in entities]
    backend = nlp.get_pipe("recot_ner").model
    (answer,) = backend(reasoning_requests([["Barack", "Obama", "visited", "Paris", "."]]))
    assert isinstance(answer, Answer) and answer.token_scores
    # The token offsets cover the answer text, in order.
    assert answer.token_scores[-1][1] == len(answer) and all(s <= e for s, e, _ in answer.token_scores)
    strict = qwen_nlp(trained_qwen3_dir, model={"constrained": constrained}, threshold=1.0)
    record = strict("Barack Obama visited Paris .").user_data["recot"]["recot_ner"]
    assert record["counts"]["dropped_below_threshold"] >= 1
    assert all(e["score"] >= 1.0 for e in record["entities"])
    with pytest.raises(ValueError, match="threshold must be a number from 0 to 1"):
        qwen_nlp(trained_qwen3_dir, threshold=2)


def test_scores_on_spans_and_spans_groups_survive_a_docbin(trained_qwen3_dir):
    from spacy.tokens import DocBin

    nlp = qwen_nlp(trained_qwen3_dir, spans_key="all")
    doc = nlp("Barack Obama visited Paris .")
    group = doc.spans["all"]
    assert len(group) >= 2 and len(group.attrs["scores"]) == len(group)
    assert all(0.0 < score <= 1.0 for score in group.attrs["scores"])
    assert [span._.recot_score for span in group] == group.attrs["scores"]
    assert all(ent._.recot_score is not None for ent in doc.ents)
    restored = next(iter(DocBin(docs=[doc], store_user_data=True).get_docs(nlp.vocab)))
    assert [e._.recot_score for e in restored.ents] == [e._.recot_score for e in doc.ents]
    # A span no component scored has no score.
    assert doc[2:3]._.recot_score is None


def test_overlaps_resolved_by_score_or_length():
    from spacy.util import filter_spans

    from spacy_recot.component import RecotNER
    from spacy_recot.doc_entities import resolve_overlaps
    from spacy_recot.testing.oracle import OracleBackend

    nlp = spacy.blank("en")
    doc = nlp("any good cheap german restaurants nearby")
    whole = doc.char_span(0, len(doc.text), label="restaurant name")
    german = doc.char_span(15, 21, label="cuisine")
    nearby = doc.char_span(34, 40, label="location")
    scores = {(0, len(doc.text), "restaurant name"): 0.3, (15, 21, "cuisine"): 0.9}
    pipe = RecotNER(nlp.vocab, OracleBackend("g.spacy", output_format="entities"), labels=["cuisine"])
    assert pipe.overlaps == "score"  # the default
    # The confident short answers win; an unscored span ranks after scored ones.
    assert resolve_overlaps([whole, german, nearby], scores, pipe.overlaps) == [german, nearby]
    # Without scores it is filter_spans: the longest, then the first.
    assert (
        resolve_overlaps([german, whole, nearby], {}, pipe.overlaps) == filter_spans([german, whole, nearby]) == [whole]
    )
    assert resolve_overlaps([whole, german, nearby], scores, "longest") == [whole]
    # Checked by spaCy's config system (the factory's Literal type), naming the key and the choices.
    with pytest.raises(ValueError, match=r"recot_ner -> overlaps.*'first' is not .*\['longest', 'score'\]"):
        spacy.blank("en").add_pipe("recot_ner", config={"labels": ["a"], "overlaps": "first"})
    with pytest.raises(ValueError, match="overlaps must be one of"):  # constructed directly
        RecotNER(nlp.vocab, OracleBackend("g.spacy", output_format="entities"), labels=["a"], overlaps="first")


@pytest.mark.slow
def test_the_model_defines_the_labels_once_at_initialize(tmp_path):
    """A real instruction model (SmolLM2-135M, shipped in a pip package) writes a
    definition of each label; they reach the prompts, the config and the
    pipeline folder, and a rerun reads them from the answer cache."""
    config = {
        "labels": ["politician", "person"],
        "model": {"@misc": "spacy_recot.PackagedCausal.v4", "name": "smollm2-135m-instruct", "adapter": None},
        "label_descriptions": {"politician": "A person who holds or seeks political office."},
        "cache_dir": str(tmp_path / "cache"),
        "store_io": True,
    }
    nlp = spacy.blank("en")
    pipe = nlp.add_pipe("recot_ner", config=config)
    nlp.config["initialize"]["components"]["recot_ner"] = {"describe_labels": True}
    nlp.initialize()
    described = pipe.label_descriptions
    # The given definition is kept; the model wrote the other one.
    assert described["politician"] == "A person who holds or seeks political office."
    assert described["person"].strip() and "\n" not in described["person"]
    assert sum(pipe.description_counts.values()) == 1
    assert nlp.config["components"]["recot_ner"]["label_descriptions"] == described
    # The entity prompts show them, and still run under the grammar.
    doc = nlp("Barack Obama met Angela Merkel in Berlin.")
    prompt = doc.user_data["recot"]["recot_ner"]["io"][0]["prompt"]
    assert "Entity type definitions:" in prompt and described["person"] in prompt
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.get_pipe("recot_ner").label_descriptions == described
    # A fresh pipe with the same cache asks the model nothing.
    again = spacy.blank("en").add_pipe("recot_ner", config=config)
    again.initialize()
    requests = again.model.stats["requests"]
    assert again.describe_labels()["person"] == described["person"]
    assert again.model.stats["requests"] == requests


def test_a_seq2seq_model_defines_labels_in_free_text(trained_t5_dir):
    """The BIO backend's forced decoder needs words to copy; a definition has
    none, so it is written freely (a tiny T5 writes nonsense: it is read, kept
    or refused with a warning, never raised)."""
    nlp = t5_nlp(trained_t5_dir)
    pipe = nlp.get_pipe("recot_ner")
    nlp.initialize()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        described = pipe.describe_labels()
    assert set(described) <= set(LABELS)
    assert sum(pipe.description_counts.values()) == len(LABELS)
    assert nlp("Barack Obama visited Paris.") is not None


def test_describing_no_labels_fails_early():
    pipe = t5_nlp("/nowhere/gone", labels=[]).get_pipe("recot_ner")
    with pytest.raises(ValueError, match="recot_ner.labels is empty"):
        pipe.describe_labels()
