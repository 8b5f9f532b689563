"""CoT tuning and GRPO on tiny Qwen3 models: answer-only loss, the output loads
in the component, a GRPO run logs its rewards, and the `reasoning` workflow."""

import json
import subprocess
import sys

import pytest
import spacy

from .conftest import CAUSAL_SENTENCES, LABELS, RATIONALES, ROOT, copy_project, requires_data, run_workflow

sys.path.insert(0, str(ROOT / "training"))


def records():
    from spacy_recot.chunks import Chunk
    from spacy_recot.tasks.bio_tags import tags_to_spans

    rows = []
    for i, ((words, tags), cot) in enumerate(zip(CAUSAL_SENTENCES, RATIONALES)):
        chunk = Chunk.from_words(words)
        ents = [{"text": chunk.slice_text(s, e), "label": label} for s, e, label in tags_to_spans(tags)]
        rows.append(
            {"guid": str(i), "sentence": chunk.text, "schema": LABELS, "cot": cot, "entities": ents, "source": "t"}
        )
    return rows


def run_script(script: str, *args: object) -> None:
    """Run training/SCRIPT with ARGS in a new process; it must succeed."""
    run = [sys.executable, str(ROOT / "training" / script), *map(str, args)]
    done = subprocess.run(run, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture
def cot_file(tmp_path):
    path = tmp_path / "ner_cot.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records()))
    return path


def test_prompt_tokens_carry_no_loss(bpe_tokenizer):
    from train_sft import bio_example, tokenize

    from spacy_recot.cot_data import chat_example

    example = chat_example(records()[0])
    row = tokenize(example, bpe_tokenizer, 4096)
    prompt = bpe_tokenizer.apply_chat_template(example["prompt"], tokenize=False, add_generation_prompt=True)
    n_prompt = len(bpe_tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert row["labels"][:n_prompt] == [-100] * n_prompt
    answer = [t for t in row["labels"] if t != -100]
    assert answer == row["input_ids"][n_prompt:]
    text = bpe_tokenizer.decode(answer)
    assert text.startswith("<think>\nBarack Obama is a person.") and text.endswith("}<|im_end|>")
    assert '"person": [\n      "Barack Obama"' in text and not any(row["b_mask"])
    assert tokenize(example, bpe_tokenizer, 10) is None  # too long: left out, not cut
    # --no-cot: the JSON alone; --format bio: the B of each tag is marked for RCLoss.
    assert chat_example(records()[0], with_cot=False)["completion"][0]["content"].startswith("{")
    bio = tokenize(bio_example(records()[0]), bpe_tokenizer, 4096)
    marked = [bpe_tokenizer.decode([t]) for t, m in zip(bio["input_ids"], bio["b_mask"]) if m]
    assert len(marked) == 2 and all("B" in piece for piece in marked)


@pytest.mark.slow
def test_sft_then_the_component_reads_the_model(cot_file, tiny_qwen3_dir, tmp_path):
    out = tmp_path / "sft"
    base = [cot_file, "--model", tiny_qwen3_dir]
    run_script(
        "train_sft.py", *base, "--output-dir", out, "--max-steps", 120, "--lr", 3e-3, "--batch-size", 3, "--warmup", 0
    )
    log = json.loads((out / "training_log.json").read_text())
    assert log["steps"][-1]["loss"] < log["steps"][0]["loss"] / 5
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "recot_ner",
        config={
            "labels": LABELS,
            "model": {"@misc": "spacy_recot.HFCausal.v2", "name_or_path": str(out), "max_new_tokens": 120},
            "prompt": {"@misc": "spacy_recot.ReasoningNERPrompt.v1"},
        },
    )
    doc = nlp("Barack Obama visited Paris .")
    assert [(e.text, e.label_) for e in doc.ents] == [("Barack Obama", "person"), ("Paris", "location")]
    assert doc.user_data["recot"]["recot_ner"]["rationale"].startswith("Barack Obama is a person.")
    # LoRA: the adapter is kept and merged into the saved weights.
    lora = tmp_path / "lora"
    run_script("train_sft.py", *base, "--output-dir", lora, "--max-steps", 2, "--lora", "--resume")
    assert (lora / "adapter" / "adapter_config.json").exists() and (lora / "model.safetensors").exists()


@pytest.mark.slow
def test_grpo_two_steps_log_rewards(trained_qwen3_dir, tmp_path):
    sample = tmp_path / "grpo.jsonl"
    sample.write_text(
        "".join(
            json.dumps({k: r[k] for k in ("guid", "sentence", "schema", "entities", "source")}) + "\n"
            for r in records()
        )
    )
    out = tmp_path / "grpo"
    settings = ["--num-generations", 2, "--batch-size", 2, "--grad-accum", 1, "--max-completion-length", 80]
    settings += ["--max-steps", 2, "--num-iterations", 1, "--temperature", "1.0", "--gradient-checkpointing"]
    run_script("train_grpo.py", sample, "--model", trained_qwen3_dir, "--output-dir", out, *settings)
    log = json.loads((out / "training_log.json").read_text())
    assert [s["step"] for s in log["steps"]] == [1, 2] and log["generation"] == "transformers"
    assert log["gradient_checkpointing"] is True  # on the CPU too, when asked (a 1.5B step needs it)
    assert all(0.0 <= s["reward"] <= 11.0 and "rewards/f1_reward/mean" in s for s in log["steps"])
    assert all(s["step_time"] > 0 for s in log["steps"])  # what a step costs, kept with the results
    assert max(s["reward"] for s in log["steps"]) > 0  # the trained tiny model answers some prompts right
    assert (out / "reward_curve.png").exists() and (out / "model.safetensors").exists()


@pytest.mark.slow
@requires_data()
def test_project_reasoning_workflow(tmp_path):
    """The `reasoning` workflow end to end in a copy of the project: the packaged
    model as teacher and judge, a tiny Qwen3 as the student."""
    project = copy_project(tmp_path)
    run_workflow(project, "reasoning", timeout=900)
    assert len((project / "corpus" / "cot" / "ner_cot.jsonl").read_text().splitlines()) >= 1
    assert "ents_f" in json.loads((project / "metrics" / "reasoning_dev.json").read_text())
    assert list((project / "packages").rglob("*.whl"))
    nlp = spacy.load(project / "pipelines" / "reasoning")
    assert nlp.get_pipe("recot_ner").prompt.example_labels == "placeholders"
