"""`python -m spacy_recot annotate`: shards, resumption, failures, and the same
output on a local Ray instance as in one process."""

import json
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_recot.annotate import annotate, read_records
from spacy_recot.cli import app
from spacy_recot.oracle import load_gold_docs

from .conftest import GNER, LABELS, requires_data
from .test_oracle import oracle_nlp

runner = CliRunner()


@pytest.fixture(scope="module")
def gold(tmp_path_factory):
    """The first 25 CrossNER-AI sentences as gold docs, an oracle pipeline on
    disk that answers with their annotation, and a JSONL input of their texts."""
    from spacy_recot.conll import convert

    root = tmp_path_factory.mktemp("annotate")
    convert(GNER / "crossner_ai" / "test.txt", root / "ai.spacy")
    docs = load_gold_docs(root / "ai.spacy")[:25]
    DocBin(docs=docs).to_disk(root / "gold.spacy")
    nlp = oracle_nlp(root / "ai.spacy", output_format="entities")
    nlp.to_disk(root / "oracle")
    with (root / "input.jsonl").open("w", encoding="utf-8") as f:
        for i, doc in enumerate(docs):
            f.write(json.dumps({"id": f"ai-{i}", "text": doc.text}) + "\n")
    return root, docs


def read_jsonl(folder: Path):
    return [json.loads(line) for path in sorted(folder.glob("shard-*.jsonl")) for line in path.open()]


@requires_data(GNER)
def test_shards_hold_every_record_with_its_fields_and_the_gold_entities(gold, tmp_path):
    root, docs = gold
    result = runner.invoke(
        app,
        [
            "annotate",
            str(root / "oracle"),
            str(root / "input.jsonl"),
            str(tmp_path),
            "-f",
            "both",
            "--shard-size",
            "10",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "3 shards written" in result.output
    out = read_jsonl(tmp_path)
    assert [r["id"] for r in out] == [f"ai-{i}" for i in range(25)]
    for record, doc in zip(out, docs):
        gold_ents = [(e.start_char, e.end_char, e.label_) for e in doc.ents]
        assert [(e["start_char"], e["end_char"], e["label"]) for e in record["entities"]] == gold_ents
        assert record["recot"]["recot_ner"]["counts"] == {}
    nlp = spacy.blank("en")
    annotated = [d for p in sorted(tmp_path.glob("shard-*.spacy")) for d in DocBin().from_disk(p).get_docs(nlp.vocab)]
    assert [d.text for d in annotated] == [d.text for d in docs]
    assert [len(d.ents) for d in annotated] == [len(d.ents) for d in docs]
    assert "recot" in annotated[0].user_data


@requires_data(GNER)
def test_a_rerun_skips_whole_shards_and_redoes_missing_ones(gold, tmp_path):
    root, _ = gold
    args = (str(root / "oracle"), root / "input.jsonl", tmp_path)
    assert annotate(*args, shard_size=10, show_progress=False)["written"] == 3
    before = (tmp_path / "shard-00001.jsonl").read_bytes()
    (tmp_path / "shard-00001.jsonl").unlink()
    (tmp_path / ".shard-00001.jsonl.x.tmp").write_text("half a shard")  # a crashed write
    summary = annotate(*args, shard_size=10, show_progress=False)
    assert (summary["written"], summary["skipped"]) == (1, 2)
    assert (tmp_path / "shard-00001.jsonl").read_bytes() == before
    with pytest.raises(ValueError, match="shard_size differ"):
        annotate(*args, shard_size=5, show_progress=False)
    # Another pipeline (labels, model, prompt) over the same folder is refused too.
    other = spacy.load(root / "oracle")
    other.get_pipe("recot_ner").add_label("gadget")
    other.to_disk(tmp_path / "other-pipeline")
    with pytest.raises(ValueError, match="pipeline_config_sha256 differ"):
        annotate(str(tmp_path / "other-pipeline"), root / "input.jsonl", tmp_path, shard_size=10)


@requires_data(GNER)
def test_a_shard_with_a_failed_doc_is_not_written_and_is_retried(gold, tmp_path):
    root, _ = gold
    lines = (root / "input.jsonl").read_text().splitlines()
    lines[12] = json.dumps({"id": "odd", "text": "A sentence the oracle has no gold for."})
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    result = runner.invoke(
        app, ["annotate", str(root / "oracle"), str(tmp_path / "in.jsonl"), str(tmp_path / "out"), "--shard-size", "10"]
    )
    assert result.exit_code == 1
    assert "2 shards written" in result.output and "1 failed" in result.output
    assert "shard 1: recot_ner: ValueError" in result.output
    assert sorted(p.name for p in (tmp_path / "out").glob("shard-*")) == ["shard-00000.jsonl", "shard-00002.jsonl"]


def test_bad_input_names_file_and_line(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "fine"}\n{"text": 3}\n')
    with pytest.raises(ValueError, match=r"in.jsonl:2: needs a string field 'text'"):
        read_records(path)
    path.write_text('{"text": "fine"}\n\n{"text": "cut\n')
    with pytest.raises(ValueError, match=r"in.jsonl:3: not a JSON object"):
        read_records(path)
    result = runner.invoke(app, ["annotate", "x", str(path), str(tmp_path / "out")])
    assert result.exit_code == 2 and "in.jsonl:3" in result.output
    (tmp_path / "plain.txt").write_text("one\n\nthree\n")
    assert read_records(tmp_path / "plain.txt") == [{"text": "one"}, {"text": ""}, {"text": "three"}]


def docs_of(path: Path):
    docs = DocBin().from_disk(path).get_docs(spacy.blank("en").vocab)
    return [(d.text, [(e.start_char, e.end_char, e.label_) for e in d.ents], d.user_data) for d in docs]


@pytest.mark.slow
@requires_data(GNER)
def test_ray_actor_pool_writes_what_one_process_writes(gold, trained_qwen3_dir, tmp_path):
    """On a local Ray instance (2 CPUs, 2 actors): byte-identical shards, for
    the oracle pipeline and for a tiny causal model's."""
    import ray

    root, _ = gold
    tiny = spacy.blank("en")
    model = {"@misc": "spacy_recot.HFCausal.v2", "name_or_path": str(trained_qwen3_dir), "max_new_tokens": 48}
    tiny.add_pipe(
        "recot_ner", config={"labels": LABELS, "model": model, "prompt": {"@misc": "spacy_recot.ReasoningNERPrompt.v1"}}
    )
    tiny.to_disk(tmp_path / "tiny")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        for name, pipeline in (("oracle", root / "oracle"), ("tiny", tmp_path / "tiny")):
            kwargs = {"fmt": "both", "shard_size": 6, "show_progress": False}
            local = annotate(str(pipeline), root / "input.jsonl", tmp_path / f"{name}-local", **kwargs)
            remote = annotate(
                str(pipeline), root / "input.jsonl", tmp_path / f"{name}-ray", engine="ray", actors=2, **kwargs
            )
            assert local["written"] == remote["written"] == 5 and not remote["failed"]
            again = annotate(str(pipeline), root / "input.jsonl", tmp_path / f"{name}-ray", engine="ray", **kwargs)
            assert (again["written"], again["skipped"]) == (0, 5)  # nothing to do: no dataset made
            for path in sorted((tmp_path / f"{name}-local").glob("shard-*.jsonl")):
                assert (tmp_path / f"{name}-ray" / path.name).read_bytes() == path.read_bytes(), (name, path.name)
            # DocBin bytes hold a set of strings, ordered by each process's hash seed: compare the docs.
            for path in sorted((tmp_path / f"{name}-local").glob("shard-*.spacy")):
                assert docs_of(tmp_path / f"{name}-ray" / path.name) == docs_of(path), (name, path.name)
    finally:
        ray.shutdown()
