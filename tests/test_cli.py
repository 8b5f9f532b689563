import json

from typer.testing import CliRunner

from spacy_recot.cli import app

from .conftest import ORACLE_SENTENCES, unwritable_folder

runner = CliRunner()


def test_convert_and_evaluate(tmp_path):
    data = tmp_path / "test.txt"
    data.write_text("Barack\tB-person\nObama\tI-person\nvisited\tO\nParis\tB-location\n\nHi\tO\n", encoding="utf-8")
    (tmp_path / "label.txt").write_text("person\nlocation\n")
    out = tmp_path / "corpus" / "test.spacy"
    result = runner.invoke(app, ["convert", str(data), str(out)])
    assert result.exit_code == 0, result.output
    assert "2 docs, 2 labels" in result.output
    assert json.loads((tmp_path / "corpus" / "test.labels.json").read_text()) == ["person", "location"]

    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe(
        "recot_ner",
        config={
            "labels": ["person"],
            "prompt": {"@misc": "spacy_recot.GNERPrompt.v1"},
            "model": {"@misc": "spacy_recot.Oracle.v1", "gold": str(out), "noise": {"drop_word": 1.0}},
        },
    )
    nlp.to_disk(tmp_path / "oracle")
    metrics = tmp_path / "metrics.json"
    result = runner.invoke(app, ["evaluate", str(tmp_path / "oracle"), str(out), "--output", str(metrics)])
    assert result.exit_code == 0, result.output
    scores = json.loads(metrics.read_text())
    # The file's own labels (person, location) replace the pipeline's (person).
    assert scores["datasets"]["corpus"]["labels"] == ["person", "location"]
    assert 0.0 <= scores["average_ents_f"] <= 1.0
    assert "average" in result.output
    assert "Tokenization used: reference" in result.output


def test_help_wraps_paragraphs_to_the_terminal():
    # A wide terminal: each command's description is one line, not the source's line breaks.
    wide = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "400", "TERMINAL_WIDTH": "400"})
    assert wide.exit_code == 0, wide.output
    line = next(line for line in wide.output.splitlines() if "init-pipeline" in line)
    assert "around the packaged default model, or around a trained model" in line
    assert "take it as it is" in line


def test_convert_reports_malformed_line(tmp_path):
    data = tmp_path / "bad.txt"
    data.write_text("Barack\tB-person\nObama\tPERSON\n", encoding="utf-8")
    result = runner.invoke(app, ["convert", str(data), str(tmp_path / "x.spacy")])
    assert result.exit_code == 1
    assert "bad.txt:2" in result.output and "PERSON" in result.output


def test_convert_a_folder_mirrors_the_tree(tmp_path):
    (tmp_path / "in" / "a").mkdir(parents=True)
    (tmp_path / "in" / "a" / "test.txt").write_text("x\tB-t\n", encoding="utf-8")
    (tmp_path / "in" / "a" / "label.txt").write_text("t\n", encoding="utf-8")
    result = runner.invoke(app, ["convert", str(tmp_path / "in"), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "a" / "test.spacy").exists()
    assert json.loads((tmp_path / "out" / "a" / "test.labels.json").read_text()) == ["t"]


def test_init_pipeline_finds_the_kind_of_model(tmp_path, tiny_qwen3_dir, tiny_t5_dir):
    import spacy

    from spacy_recot.cli import app

    labels = tmp_path / "labels.json"
    labels.write_text('["person"]')
    runner = CliRunner()
    done = runner.invoke(
        app,
        [
            "init-pipeline",
            str(tmp_path / "q"),
            "--model",
            str(tiny_qwen3_dir),
            "--labels",
            str(labels),
            "--prompt",
            "reasoning",
        ],
    )
    assert done.exit_code == 0, done.output
    pipe = spacy.load(tmp_path / "q").get_pipe("recot_ner")
    assert type(pipe.model).__name__ == "HFCausalBackend" and pipe.model.max_new_tokens == 4096
    done = runner.invoke(
        app,
        ["init-pipeline", str(tmp_path / "b"), "-m", str(tiny_qwen3_dir), "--labels", str(labels), "--prompt", "recot"],
    )
    assert done.exit_code == 0, done.output  # a causal model trained to write BIO (train_sft.py --format bio)
    assert type(spacy.load(tmp_path / "b").get_pipe("recot_ner").model).__name__ == "HFCausalBackend"
    done = runner.invoke(
        app,
        [
            "init-pipeline",
            str(tmp_path / "t"),
            "-m",
            str(tiny_t5_dir),
            "--labels",
            str(labels),
            "--prompt",
            "reasoning",
        ],
    )
    assert done.exit_code != 0


def test_init_pipeline_without_a_model_writes_the_packaged_default(tmp_path):
    from spacy.util import load_config

    from spacy_recot.backends.packaged import DEFAULT_PACKAGED
    from spacy_recot.cli import app

    runner = CliRunner()
    done = runner.invoke(app, ["init-pipeline", str(tmp_path / "p"), "--labels", "person, location"])
    assert done.exit_code == 0, done.output
    component = load_config(tmp_path / "p" / "config.cfg")["components"]["recot_ner"]
    assert component["labels"] == ["person", "location"]
    assert component["model"]["@misc"] == "spacy_recot.PackagedCausal.v4" and component["prompt"] is None
    # The folder names the pip package's model; its weights stay in the package.
    assert (
        json.loads((tmp_path / "p" / "recot_ner" / "model" / "packaged.json").read_text())["name"] == DEFAULT_PACKAGED
    )
    for args, message in [
        (["--labels", " , "], "give the entity types"),
        (["--labels", "missing.json"], "missing.json does not exist"),
        (["--labels", "person", "--prompt", "gner"], "asks for 'bio' output"),
        (["--labels", "person", "--backend", "seq2seq"], "needs --model"),
    ]:
        failed = runner.invoke(app, ["init-pipeline", str(tmp_path / "bad"), *args])
        assert failed.exit_code != 0 and message in " ".join(failed.output.split()), failed.output


def test_show_writes_a_page_with_scores_and_reasons(tmp_path, trained_qwen3_dir):
    import spacy

    from spacy_recot.cli import app

    nlp = spacy.blank("en")
    nlp.add_pipe(
        "recot_ner",
        config={
            "labels": ["person", "location"],
            "model": {
                "@misc": "spacy_recot.HFCausal.v2",
                "name_or_path": str(trained_qwen3_dir),
                "max_new_tokens": 100,
            },
            "prompt": {"@misc": "spacy_recot.ReasoningNERPrompt.v1"},
        },
    )
    nlp.to_disk(tmp_path / "p")
    done = CliRunner().invoke(
        app, ["show", str(tmp_path / "p"), "Barack Obama visited Paris .", "--output", str(tmp_path / "page.html")]
    )
    assert done.exit_code == 0, done.output
    page = (tmp_path / "page.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "Barack Obama" in page
    assert "person 0." in page or "person 1." in page  # the label carries the score
    assert "Barack Obama is a person." in page  # the reason, in the table


def one_line_error(result, code=1):
    """A command's error as it reaches the user: one line, no traceback."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)  # no crash
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_convert_refuses_bad_limits_labels_and_outputs_in_one_line(tmp_path):
    data = tmp_path / "test.txt"
    data.write_text("Barack\tB-person\nObama\tI-person\n\nHi\tO\n", encoding="utf-8")
    result = runner.invoke(app, ["convert", str(data), str(tmp_path / "x.spacy"), "-n", "-1"])
    # (rich draws the usage error in a box, wrapped to the terminal: compare the words only)
    words = " ".join(" ".join(line.strip(" │╭╮╰╯─") for line in result.output.splitlines()).split())
    assert result.exit_code == 2 and "'--limit' / '-n': Input should be greater than or equal to 0" in words
    assert not (tmp_path / "x.spacy").exists()
    line = one_line_error(runner.invoke(app, ["convert", str(data), str(tmp_path / "x.spacy"), "-l", "missing.txt"]))
    assert "missing.txt: no such label file" in line
    (tmp_path / "out.spacy").mkdir()
    assert "is a folder" in one_line_error(runner.invoke(app, ["convert", str(data), str(tmp_path / "out.spacy")]))
    (tmp_path / "a-file").write_text("x")
    line = one_line_error(runner.invoke(app, ["convert", str(data), str(tmp_path / "a-file" / "x.spacy")]))
    assert "a-file" in line


def test_show_fails_in_one_line_for_a_missing_pipeline_or_an_unwritable_page(oracle_pipeline, tmp_path):
    line = one_line_error(runner.invoke(app, ["show", str(tmp_path / "none"), "Hi", "-o", str(tmp_path / "p.html")]))
    assert "E050" in line and "none" in line
    (tmp_path / "a-file").write_text("x")
    for page in (tmp_path / "a-file" / "p.html", unwritable_folder(tmp_path) / "p.html", tmp_path):
        line = one_line_error(runner.invoke(app, ["show", str(oracle_pipeline), ORACLE_SENTENCES[0], "-o", str(page)]))
        assert str(page) in line
    done = runner.invoke(app, ["show", str(oracle_pipeline), ORACLE_SENTENCES[0], "-o", str(tmp_path / "p.html")])
    assert done.exit_code == 0 and "Barack Obama" in (tmp_path / "p.html").read_text()
