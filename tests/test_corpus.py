"""`python -m spacy_recot annotate`: shards, resumption, failures, and the same
output on a local Ray instance as in one process."""

import json
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_recot.cli import app
from spacy_recot.corpus import annotate, read_input_records
from spacy_recot.testing.oracle import load_gold_docs

from .conftest import GNER, LABELS, ORACLE_SENTENCES, requires_data, unwritable_folder
from .testing.test_oracle import oracle_nlp

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
        read_input_records(path)
    path.write_text('{"text": "fine"}\n\n{"text": "cut\n')
    with pytest.raises(ValueError, match=r"in.jsonl:3: not a JSON object"):
        read_input_records(path)
    result = runner.invoke(app, ["annotate", "x", str(path), str(tmp_path / "out")])
    assert result.exit_code == 2 and "in.jsonl:3" in result.output
    (tmp_path / "plain.txt").write_text("one\n\nthree\n")
    assert read_input_records(tmp_path / "plain.txt") == [{"text": "one"}, {"text": ""}, {"text": "three"}]


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


# -- bad records, bad input, bad output folders (no shared data needed) ----------------


def write_jsonl(path: Path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def one_line_error(result):
    """The CLI's error as it reaches the user: one line, no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit), repr(result.exception)
    (line,) = [line for line in result.output.splitlines() if line.strip()]
    assert line.startswith("Error: ")
    return line


def test_a_record_that_can_never_be_annotated_goes_to_the_errors_file(oracle_pipeline, tmp_path):
    lines = [
        json.dumps({"id": 1, "text": ORACLE_SENTENCES[0]}),
        json.dumps({"id": 2, "text": "x" * 1_000_001}),  # longer than spaCy's max_length
        json.dumps({"id": 3, "text": "A lone \ud800 surrogate"}),  # valid JSON, not valid Unicode
        json.dumps({"id": 4, "text": ORACLE_SENTENCES[1], "note": "\udc00"}),
        '{"id": 5, "text": "' + ORACLE_SENTENCES[2] + '", "weight": NaN}',  # Python reads NaN; JSON has none
        json.dumps({"id": 6, "text": ORACLE_SENTENCES[2]}),
    ]
    path = write_jsonl(tmp_path / "in.jsonl", lines)
    result = runner.invoke(app, ["annotate", str(oracle_pipeline), str(path), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "1 shards written" in result.output and "errors-00000.jsonl: 4 records" in result.output
    out = read_jsonl(tmp_path / "out")
    assert [(r["id"], [e["text"] for e in r["entities"]]) for r in out] == [(1, ["Barack Obama"]), (6, ["Tim Cook"])]
    errors = [json.loads(line) for line in (tmp_path / "out" / "errors-00000.jsonl").open()]
    assert [e["line"] for e in errors] == [2, 3, 4, 5]
    assert "E088" in errors[0]["error"] and "surrogates not allowed" in errors[1]["error"]
    assert all("\n" not in e["error"] for e in errors)
    # The bad records are where they were: a rerun has nothing to do, and says so again.
    again = runner.invoke(app, ["annotate", str(oracle_pipeline), str(path), str(tmp_path / "out")])
    assert again.exit_code == 0 and "0 shards written, 1 already there" in again.output
    assert "errors-00000.jsonl: 4 records" in again.output


def test_the_input_is_read_whole_or_refused_naming_file_and_line(oracle_pipeline, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(json.dumps({"text": ORACLE_SENTENCES[0]}).encode() + b'\n{"text": "caf\xe9"}\n')
    with pytest.raises(ValueError, match=r"in.jsonl:2: not UTF-8 text"):
        read_input_records(path)
    write_jsonl(path, [json.dumps({"text": ORACLE_SENTENCES[0]}), "[" * 100_000 + "]" * 100_000])
    with pytest.raises(ValueError, match=r"in.jsonl:2: not a JSON object \(nested too deeply\)"):
        read_input_records(path)
    for field in ("entities", "recot"):
        write_jsonl(path, [json.dumps({"text": ORACLE_SENTENCES[0], field: ["gold"]})])
        with pytest.raises(ValueError, match=rf"in.jsonl:1: has a field '{field}', which the output writes"):
            read_input_records(path)
    line = one_line_error(runner.invoke(app, ["annotate", str(oracle_pipeline), str(path), str(tmp_path / "out")]))
    assert "in.jsonl:1" in line and not (tmp_path / "out").exists()
    # A byte order mark is not part of the first record.
    path.write_bytes("\ufeff".encode() + json.dumps({"text": ORACLE_SENTENCES[0]}).encode() + b"\n")
    assert read_input_records(path) == [{"text": ORACLE_SENTENCES[0]}]


def test_a_missing_pipeline_leaves_the_folder_free_for_the_right_one(oracle_pipeline, tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [json.dumps({"text": t}) for t in ORACLE_SENTENCES])
    line = one_line_error(
        runner.invoke(app, ["annotate", str(tmp_path / "no_pipeline"), str(path), str(tmp_path / "out")])
    )
    assert "No pipeline at" in line and "no_pipeline" in line
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert annotate(str(oracle_pipeline), path, tmp_path / "out", show_progress=False)["written"] == 1


def test_an_output_that_cannot_be_written_is_a_one_line_error(oracle_pipeline, tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [json.dumps({"text": t}) for t in ORACLE_SENTENCES])
    (tmp_path / "a-file").write_text("not a folder")
    unwritable = unwritable_folder(tmp_path)
    for output, says in (
        (tmp_path / "a-file", "cannot be made"),
        (tmp_path / "a-file" / "out", "cannot be made"),
        (unwritable, "Cannot write in the output folder"),
        (unwritable / "out", "cannot be made"),
    ):
        line = one_line_error(runner.invoke(app, ["annotate", str(oracle_pipeline), str(path), str(output)]))
        assert says in line and str(output) in line, line


def test_a_rerun_removes_what_a_killed_run_left_and_files_follow_the_umask(oracle_pipeline, tmp_path):
    import os

    path = write_jsonl(tmp_path / "in.jsonl", [json.dumps({"text": t}) for t in ORACLE_SENTENCES])
    out = tmp_path / "out"
    out.mkdir()
    # What kill -9 leaves in the middle of writing a shard.
    (out / ".shard-00000.jsonl.0123456789ab.tmp").write_text('{"text": "half a')
    (out / ".manifest.json.0123456789ab.tmp").write_text("{")
    old = os.umask(0o022)
    try:
        assert annotate(str(oracle_pipeline), path, out, fmt="both", show_progress=False)["written"] == 1
    finally:
        os.umask(old)
    assert not list(out.glob("*.tmp"))
    for name in ("shard-00000.jsonl", "shard-00000.spacy", "manifest.json"):
        assert (out / name).stat().st_mode & 0o777 == 0o644, name


def test_two_runs_never_write_one_folder_at_once(oracle_pipeline, tmp_path):
    import fcntl
    import os

    path = write_jsonl(tmp_path / "in.jsonl", [json.dumps({"text": t}) for t in ORACLE_SENTENCES])
    (tmp_path / "out").mkdir()
    fd = os.open(tmp_path / "out" / ".annotate.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another run holds the folder
        (tmp_path / "out" / ".shard-00000.jsonl.0123456789ab.tmp").write_text("being written")
        with pytest.raises(ValueError, match="Another annotate run is writing"):
            annotate(str(oracle_pipeline), path, tmp_path / "out", show_progress=False)
        assert (tmp_path / "out" / ".shard-00000.jsonl.0123456789ab.tmp").exists()  # not the other run's
    finally:
        os.close(fd)
    assert annotate(str(oracle_pipeline), path, tmp_path / "out", show_progress=False)["written"] == 1


def test_a_ray_actor_passes_bad_records_with_their_line_numbers(oracle_pipeline):
    """What each Ray actor does with a shard (run here without Ray: the slow test
    above runs the pool)."""
    from spacy_recot.corpus import _ShardAnnotator

    actor = _ShardAnnotator(str(oracle_pipeline), "jsonl", "text", None)
    numbered = [[7, {"text": ORACLE_SENTENCES[0]}], [8, {"text": "x" * 1_000_001}]]
    out = actor({"index": [3], "records": [json.dumps(numbered)]})
    assert out["index"] == [3] and json.loads(out["failures"][0]) == []
    assert [e["line"] for e in json.loads(out["errors"][0])] == [8]
    assert [json.loads(line)["text"] for line in out["jsonl"][0].splitlines()] == [ORACLE_SENTENCES[0]]
