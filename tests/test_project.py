"""The spaCy project: `spacy project run all` on the tiny CPU configuration, and the ablation table."""

import json
import shutil
import subprocess
import sys
import zipfile

import pytest

from .conftest import DATA, ROOT, copy_project, requires_data, run_workflow


@pytest.mark.slow
@requires_data()
def test_project_run_all_on_the_tiny_configuration(tmp_path):
    project = copy_project(tmp_path)
    run_workflow(project, "all", timeout=600)
    log = json.loads((project / "training" / "recot" / "training_log.json").read_text())
    assert [row["epoch"] for row in log["epochs"]] == [1.0, 2.0, 3.0]
    assert log["epochs"][2]["loss"] < log["epochs"][0]["loss"]
    metrics = json.loads((project / "metrics" / "recot_dev.json").read_text())
    assert "ents_f" in metrics and "ents_per_type" in metrics
    wheels = list((project / "packages").rglob("*.whl"))
    assert len(wheels) == 1 and wheels[0].name.startswith("en_recot_recot-0.0.1")
    # The license travels: tiny base model -> trained model -> pipeline -> wheel.
    assert (project / "pipelines" / "recot" / "LICENSE").is_file()
    with zipfile.ZipFile(wheels[0]) as wheel:
        assert any(name.endswith("LICENSE") for name in wheel.namelist())
    # The ablation table reads the run.
    subprocess.run(
        [sys.executable, "scripts/collect_runs.py", "training", "-o", "metrics/ablations.md"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "| recot | recot | rcloss | 1.2 | 1.0 |" in (project / "metrics" / "ablations.md").read_text()


def test_collect_runs_table(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    from collect_runs import collect, to_markdown

    for name, loss, f1s in (("full", "rcloss", [0.2, 0.5, 0.4]), ("no_rcloss", "ce", [0.1, 0.3])):
        (tmp_path / name).mkdir()
        epochs = [{"epoch": i + 1.0, "loss": 1.0, "precision": f, "recall": f, "f1": f} for i, f in enumerate(f1s)]
        (tmp_path / name / "training_log.json").write_text(
            json.dumps({"prompt": "recot", "loss": loss, "alpha": 1.2, "beta": 1.0, "epochs": epochs})
        )
    rows = collect(tmp_path)
    assert [(r["run"], r["best_epoch"], r["f1"]) for r in rows] == [("full", 2.0, 0.5), ("no_rcloss", 2.0, 0.3)]
    table = to_markdown(rows)
    assert "| full | recot | rcloss | 1.2 | 1.0 | 2.0 | 50.00 | 50.00 | 50.00 |" in table
    assert "| no_rcloss | recot | ce | - | - | 2.0 |" in table


@requires_data()
def test_assets_are_declared_with_the_checksums_of_the_data(tmp_path):
    """`spacy project assets` over this team's copy of the data: every declared
    file is there with the declared md5, so nothing is fetched (no network)."""
    import srsly

    shutil.copy(ROOT / "project.yml", tmp_path)
    assets = srsly.read_yaml(ROOT / "project.yml")["assets"]
    declared = {a["dest"].replace("${vars.data_dir}/", "") for a in assets}
    on_disk = {str(p.relative_to(DATA)) for p in DATA.rglob("*") if p.is_file() and p.name != "README.md"}
    assert declared == on_disk
    assert all(a["url"].startswith("https://") and len(a["checksum"]) == 32 for a in assets)
    done = subprocess.run(
        [sys.executable, "-m", "spacy", "project", "assets", str(tmp_path), f"--vars.data_dir={DATA}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("Skipping download with matching checksum") == len(assets)
