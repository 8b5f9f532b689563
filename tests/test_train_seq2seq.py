"""The training script on a tiny T5: loss goes down, accumulation is exact,
checkpoints resume, DeepSpeed runs on CPU, the result loads into the component."""

import json
import re
import shutil
from pathlib import Path

import pytest
import spacy

from .conftest import DATA, requires_data

SAMPLE = DATA / "pile-ner-sample" / "sample_data.json"
DEV = DATA / "gner" / "crossner_politics" / "test.txt"

pytestmark = requires_data(SAMPLE)


@pytest.fixture(scope="module")
def data(tmp_path_factory, t5_tokenizer):
    """Instruction data from the Pile-NER sample, a dev slice of a real test set,
    and a tiny T5 built from a config with the session tokenizer."""
    from spacy.tokens import DocBin

    from spacy_recot.conll import convert
    from spacy_recot.instruction_data import preprocess
    from spacy_recot.testing.tiny import tiny_t5

    root = tmp_path_factory.mktemp("train")
    preprocess(SAMPLE, root / "train.jsonl", max_words=24, n_negatives=1)
    convert(DEV, root / "full.spacy", None, None)
    nlp = spacy.blank("en")
    docs = list(DocBin().from_disk(root / "full.spacy").get_docs(nlp.vocab))[:3]
    DocBin(docs=docs).to_disk(root / "dev.spacy")
    shutil.copy(root / "full.labels.json", root / "dev.labels.json")
    tiny_t5(t5_tokenizer, seed=0).save_pretrained(root / "tiny")
    t5_tokenizer.save_pretrained(root / "tiny")
    return root


def build(data, out, **kwargs):
    from training.train_seq2seq import build_trainer

    opts = dict(batch_size=8, learning_rate=3e-3, max_source_length=384, max_target_length=96, eval_batch_size=8)
    opts.update(kwargs)
    return build_trainer(data / "train.jsonl", data / "dev.spacy", str(data / "tiny"), out, **opts)


def test_training_lowers_the_loss_and_saves_the_best_epoch(data, tmp_path):
    from training.train_seq2seq import run_training

    out = tmp_path / "run"
    summary = run_training(build(data, out, epochs=3), out)
    losses = [row["loss"] for row in summary["epochs"]]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert all({"precision", "recall", "f1"} <= set(row) for row in summary["epochs"])
    assert summary["best_checkpoint"] and Path(summary["best_checkpoint"]).parent == out
    assert json.loads((out / "training_log.json").read_text())["loss"] == "rcloss"
    assert (out / "training_curves.png").stat().st_size > 1000
    # The output folder is a model the component loads as it is.
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "recot_ner",
        config={
            "labels": ["person", "location"],
            "model": {
                "@misc": "spacy_recot.HFSeq2Seq.v1",
                "name_or_path": str(out),
                "generation": {"max_new_tokens": 32},
            },
            "prompt": {"@misc": "spacy_recot.ReCoTPrompt.v1"},
        },
    )
    doc = nlp("Barack Obama visited Paris.")
    assert "recot_ner" in doc.user_data["recot"]


@pytest.mark.parametrize("loss", ["rcloss", "ce"])
def test_gradient_accumulation_2_equals_a_double_batch(data, tmp_path, loss):
    """The gradient of one optimizer step: batch 4 vs 2 x 2 accumulated. The
    micro-batches hold different numbers of target tokens, so a per-batch mean
    would differ; the loss is normalised by the whole accumulated batch."""
    import torch
    from transformers import TrainerCallback

    grads = {}

    class Grab(TrainerCallback):
        def __init__(self, key):
            self.key = key

        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            grads[self.key] = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}

    for key, (batch, accum) in {"double": (4, 1), "accumulated": (2, 2)}.items():
        trainer = build(data, tmp_path / key, loss=loss, batch_size=batch, grad_accum=accum, max_steps=1)
        trainer.args.eval_strategy = "no"
        trainer.args.save_strategy = "no"
        trainer.args.load_best_model_at_end = False
        trainer.args.max_grad_norm = 0.0  # no clipping: it would hide a constant-factor error
        trainer.add_callback(Grab(key))
        for module in trainer.model.modules():  # dropout would make the two runs differ
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
            elif isinstance(getattr(module, "dropout", None), float):
                module.dropout = 0.0  # T5's attention dropout is a float
        trainer.train()
    assert grads["double"].keys() == grads["accumulated"].keys() and grads["double"]
    for name, g in grads["double"].items():
        assert (g - grads["accumulated"][name]).abs().max() <= 1e-5 + 1e-4 * g.abs().max(), name


def test_resume_from_a_checkpoint(data, tmp_path):
    from training.train_seq2seq import run_training

    out = tmp_path / "run"
    from transformers import TrainerCallback

    first = run_training(build(data, out, epochs=1), out)
    steps_per_epoch = int(Path(first["best_checkpoint"]).name.split("-")[1])
    # "Interrupted" after epoch 1: ask for 2 epochs and resume.
    steps = []

    class Count(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            steps.append(state.global_step)

    trainer = build(data, out, epochs=2)
    trainer.add_callback(Count())
    resumed = run_training(trainer, out, resume=True)
    # Only epoch 2 was trained; epoch 1's record comes from the checkpoint.
    assert steps == list(range(steps_per_epoch + 1, 2 * steps_per_epoch + 1))
    assert [row["epoch"] for row in resumed["epochs"]] == [1.0, 2.0]
    assert resumed["epochs"][0]["loss"] == first["epochs"][0]["loss"]


def test_bad_options_fail_early(data, tmp_path):
    with pytest.raises(ValueError, match="--loss must be one of"):
        build(data, tmp_path, loss="focal")
    with pytest.raises(ValueError, match="--prompt must be one of"):
        build(data, tmp_path, prompt="cot")
    with pytest.raises(ValueError, match="does not exist"):
        build(data, tmp_path, deepspeed=Path("configs/none.json"))


@pytest.mark.slow
@pytest.mark.parametrize("config", ["ds_zero2.json", "ds_zero3.json"])
def test_deepspeed_on_one_cpu_process(data, tmp_path, config):
    from training.train_seq2seq import run_training

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "ds"
    summary = run_training(build(data, out, epochs=1, deepspeed=root / "configs" / config), out)
    assert summary["deepspeed"].endswith(config)
    assert summary["epochs"][0]["loss"] > 0
    assert (out / "model.safetensors").exists()


def test_script_accepts_the_deepspeed_launchers_local_rank(tmp_path):
    """`deepspeed script.py ...` appends --local_rank=N to the script's arguments."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [
            sys.executable,
            str(root / "training" / "train_seq2seq.py"),
            str(tmp_path / "none.jsonl"),
            str(tmp_path / "none.spacy"),
            "--model",
            "x",
            "--output-dir",
            str(tmp_path / "out"),
            "--local_rank=0",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    # Rich draws typer's error in a box wrapped to the terminal's width: compare
    # the words with the box, the line breaks and the spaces taken out.
    words = re.sub(r"[\s\u2500-\u257f]+", "", done.stdout + done.stderr)
    assert "doesnotexist" in words and "Nosuchoption" not in words


def test_collator_counts_truncated_rows_from_one_tokenization(t5_tokenizer):
    from training.train_seq2seq import InstructionCollator

    collator = InstructionCollator(t5_tokenizer, max_source_length=12, max_target_length=8)
    short = {"source": "Sentence: Paris", "target": "Paris(O)"}
    long = {"source": "Sentence: " + "Paris " * 30, "target": " ".join(["Paris(B-location)"] * 10)}
    batch = collator([short, long])
    assert collator.truncated == {"source": 1, "target": 1}
    assert batch["labels"].shape[1] == 8 and batch["input_ids"].shape[1] == 12
    assert "offset_mapping" not in batch and batch["b_mask"].shape == batch["labels"].shape
