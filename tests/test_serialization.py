"""to_disk / spacy.load, to_bytes / from_bytes, config round trip, spacy package."""

import subprocess
import sys

import pytest
import spacy
from spacy.util import load_config_from_str, load_model_from_config

from .conftest import LABELS
from .test_component import ents, t5_nlp

TEXTS = ["Barack Obama visited Paris.", "Angela Merkel met Macron in Berlin."]


def test_to_disk_and_spacy_load_offline(trained_t5_dir, tmp_path):
    nlp = t5_nlp(trained_t5_dir, label_descriptions={"person": "a human being"})
    before = [ents(d) for d in nlp.pipe(TEXTS)]
    nlp.to_disk(tmp_path / "pipeline")
    model_dir = tmp_path / "pipeline" / "recot_ner" / "model"
    assert (model_dir / "model.safetensors").exists() and (model_dir / "tokenizer.json").exists()
    # The configured source may be gone: spacy.load reads the component folder.
    config = (tmp_path / "pipeline" / "config.cfg").read_text()
    (tmp_path / "pipeline" / "config.cfg").write_text(config.replace(str(trained_t5_dir), "/nowhere/gone"))
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.get_pipe("recot_ner").label_descriptions == {"person": "a human being"}
    assert [ents(d) for d in loaded.pipe(TEXTS)] == before


def test_to_bytes_from_bytes(trained_t5_dir):
    nlp = t5_nlp(trained_t5_dir)
    before = [ents(d) for d in nlp.pipe(TEXTS)]
    data = nlp.to_bytes()
    fresh = t5_nlp("/nowhere/gone")
    fresh.from_bytes(data)
    assert [ents(d) for d in fresh.pipe(TEXTS)] == before


def test_config_round_trip(trained_t5_dir):
    nlp = t5_nlp(trained_t5_dir, batch_size=3, prompt={"@misc": "spacy_recot.GNERPrompt.v1"})
    config = load_config_from_str(nlp.config.to_str())
    nlp2 = load_model_from_config(config, auto_fill=True)
    assert nlp2.config.to_str() == nlp.config.to_str()
    pipe = nlp2.get_pipe("recot_ner")
    assert pipe.labels == LABELS and pipe.batch_size == 3 and not pipe.model.is_loaded


def test_oracle_pipeline_round_trip(tmp_path):
    from spacy.tokens import DocBin

    nlp = spacy.blank("en")
    doc = nlp("Barack Obama visited Paris .")
    doc.ents = [doc.char_span(0, 12, "person")]
    DocBin(docs=[doc]).to_disk(tmp_path / "gold.spacy")
    nlp.add_pipe(
        "recot_ner",
        config={
            "labels": ["person"],
            "prompt": {"@misc": "spacy_recot.GNERPrompt.v1"},
            "model": {"@misc": "spacy_recot.Oracle.v1", "gold": str(tmp_path / "gold.spacy")},
        },
    )
    nlp.to_disk(tmp_path / "oracle")
    (tmp_path / "gold.spacy").unlink()  # the gold annotation travels with the pipeline
    assert ents(spacy.load(tmp_path / "oracle")(doc.text)) == [("Barack Obama", "person", 0, 12)]


@pytest.mark.slow
def test_spacy_package_builds_an_installable_pipeline(trained_t5_dir, tmp_path):
    nlp = t5_nlp(trained_t5_dir)
    nlp.meta["name"] = "recot_test"
    nlp.meta["version"] = "0.0.1"
    nlp.to_disk(tmp_path / "pipeline")
    (tmp_path / "packages").mkdir()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "spacy",
            "package",
            str(tmp_path / "pipeline"),
            str(tmp_path / "packages"),
            "--build",
            "wheel",
            "--force",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    wheels = list((tmp_path / "packages").rglob("*.whl"))
    assert len(wheels) == 1
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheels[0])],
        check=True,
        capture_output=True,
    )
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import spacy; nlp = spacy.load('en_recot_test');"
        "print([(e.text, e.label_) for e in nlp('Barack Obama visited Paris.').ents])"
    )
    out = subprocess.run([sys.executable, "-c", code, str(target)], check=True, capture_output=True, text=True).stdout
    assert "('Barack Obama', 'person')" in out


def test_causal_pipeline_round_trips(trained_qwen3_dir, tmp_path):
    from .test_component import qwen_nlp

    texts = ["Barack Obama visited Paris .", "Paris Hilton visited Paris ."]
    nlp = qwen_nlp(trained_qwen3_dir, model={"constrained": True, "thinking": None})
    before = [ents(d) for d in nlp.pipe(texts)]
    assert before[0] == [("Barack Obama", "person", 0, 12), ("Paris", "location", 21, 26)]
    nlp.to_disk(tmp_path / "pipeline")
    assert (tmp_path / "pipeline" / "recot_ner" / "model" / "chat_template.jinja").exists() or (
        "chat_template" in (tmp_path / "pipeline" / "recot_ner" / "model" / "tokenizer_config.json").read_text()
    )
    config = (tmp_path / "pipeline" / "config.cfg").read_text()
    (tmp_path / "pipeline" / "config.cfg").write_text(config.replace(str(trained_qwen3_dir), "/nowhere/gone"))
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.get_pipe("recot_ner").model.constrained
    assert loaded.get_pipe("recot_ner").model.tokenizer.padding_side == "left"
    assert [ents(d) for d in loaded.pipe(texts)] == before
    fresh = qwen_nlp("/nowhere/gone", model={"constrained": True})
    fresh.from_bytes(nlp.to_bytes())
    assert [ents(d) for d in fresh.pipe(texts)] == before
