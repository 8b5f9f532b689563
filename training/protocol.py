"""Does training pay? Leave-one-domain-out ablation of the project's training
methods on the default model, and RCLoss against cross-entropy.

    python training/protocol.py run                  # every stage, in order; rerun to resume
    python training/protocol.py run --only sft_answers --fold politics
    python training/protocol.py report               # the table, with paired bootstrap intervals

For each held-out CrossNER domain (a fold), the training data are sentences
from the train and dev splits of the four other domains (`--per-domain` each)
plus the Pile-NER sample; the test data are the first `--test-n` sentences of
the held-out domain's GNER test set and of MIT-Movie (never trained on). No
CrossNER test sentence and nothing from MIT is trained on.

Rows (each a LoRA adapter on the default model, scored by the component with
the default configuration plus the adapter):
  zero_shot     the default model as shipped
  sft_answers   SFT on the JSON answers only
  sft_cot       CoT SFT: `<think>` chains the default model wrote with the gold
                entities shown (NER-CoT records, kept when its entities match
                the gold ones), then the JSON
  grpo_cot      GRPO (10 x F1 + 1 x schema) from the CoT-tuned model
  grpo_zero     GRPO from the zero-shot model, no SFT
  definitions   no training: the zero-shot model with a definition of each
                label that it wrote itself, among the set's other labels
                (RecotNER.describe_labels), in every prompt; and, once `ship`
                has run, the shipped adapter with the definitions it writes,
                on MIT-Movie (`shipped_definitions`, against `shipped`)
  bio_{ce,rcloss}_s{seed}
                ReCoT's BIO format (every word with its tag) with each loss and
                three seeds, on the smaller packaged model (the cost of 12 runs)

Then `ship` (`--ship-row`, the row that won; run it only when it did): the row
trained on the sentences of all five domains, written in float16 into the
package (spacy_recot/shipped_adapters/), and scored as shipped on MIT-Movie
(still zero-shot) and the five CrossNER test sets (now in-domain).

Every stage skips what is done and resumes what was cut off (training from its
last checkpoint, evaluation from the component's answer cache), so a kill
loses minutes. Results go to `--results` (one JSON per evaluation, with every
sentence's predictions, and `protocol.json` from `report`); models, data and
logs to `--work`. On a GPU the same protocol runs at scale with the size
options changed (docs/training.md).
"""

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import typer

from spacy_recot.backends.packaged import DEFAULT_ADAPTER

ROOT = Path(__file__).resolve().parents[1]
DOMAINS = ("ai", "literature", "music", "politics", "science")
MIT = "mit-movie"
ROWS = ("sft_answers", "sft_cot", "grpo_cot", "grpo_zero", "definitions")
LOSSES = ("ce", "rcloss")
STAGES = ("zero_shot", "records", "chains", *ROWS, "bio", "ship")
# The adapter `ship` writes into the package (spacy_recot/shipped_adapters/): the
# one the component's default merges.
SHIPPED_NAME = DEFAULT_ADAPTER

app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0])


class Protocol:
    """The settings of one protocol run and where its files go."""

    def __init__(self, **settings: Any):
        self.settings = settings
        for key, value in settings.items():
            setattr(self, key, value)
        self.work = Path(self.work)
        self.results = Path(self.results)

    # Files
    def records_file(self, name: str) -> Path:
        return self.work / "records" / f"{name}.jsonl"

    def chains_dir(self) -> Path:
        """The teacher's chains: kept with the results (half a MB, committed)
        because writing them takes 79 minutes of CPU here and a machine's
        `--work` folder does not outlive its session."""
        return self.results / "chains"

    def run_dir(self, row: str, fold: str) -> Path:
        return self.work / "runs" / f"{row}_{fold}"

    def adapter(self, row: str, fold: str) -> Path:
        return self.run_dir(row, fold) / ("adapter_stacked" if row == "grpo_cot" else "adapter")

    def result_file(self, name: str) -> Path:
        return self.results / f"{name}.json"

    # Running things
    def log(self, message: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}"
        typer.echo(line)
        self.work.mkdir(parents=True, exist_ok=True)
        with open(self.work / "protocol.log", "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def call(self, args: List[str], log_name: str) -> float:
        """Run a Python command (the project's own scripts), its output in a log
        file; returns the seconds it took. A failure names the log."""
        env = dict(os.environ, OMP_NUM_THREADS=str(self.threads), TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
        log_path = self.work / "logs" / f"{log_name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log(f"start {log_name}: {' '.join(args)}")
        start = time.perf_counter()
        with open(log_path, "a", encoding="utf-8") as out:
            done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"{log_name} failed (exit {done.returncode}): see {log_path}")
        self.log(f"done {log_name} in {seconds / 60:.1f} min")
        self.add_time(log_name, seconds)
        if "--output-dir" in args:
            self.keep_training_log(Path(args[args.index("--output-dir") + 1]), log_name)
        return seconds

    def keep_training_log(self, out: Path, name: str) -> None:
        """A training run's settings and per-step metrics (its training_log.json)
        beside the results, as `training/<name>.json`."""
        found = out / "training_log.json"
        if found.exists():
            (self.results / "training").mkdir(parents=True, exist_ok=True)
            (self.results / "training" / f"{name}.json").write_text(found.read_text(encoding="utf-8"), encoding="utf-8")

    def add_time(self, name: str, seconds: float) -> None:
        """Wall time per stage, summed over resumed attempts; kept with the
        results, which outlive a machine's `--work` folder."""
        path = self.results / "times.json"
        times = json.loads(path.read_text()) if path.exists() else {}
        times[name] = times.get(name, 0.0) + seconds
        path.write_text(json.dumps(times, indent=2) + "\n")

    def times(self) -> Dict[str, float]:
        path = self.results / "times.json"
        return json.loads(path.read_text()) if path.exists() else {}

    # Evaluation
    def evaluate(
        self,
        name: str,
        sets: List[str],
        model: Dict[str, Any],
        extra: Optional[Dict[str, Any]] = None,
        describe_labels: bool = False,
    ) -> None:
        """Score a component configuration on the first `test_n` sentences of
        `sets` with benchmarks/zero_shot.py (predictions kept for the paired
        bootstrap); the answer cache makes a cut-off evaluation resume.
        describe_labels: the model defines each set's labels first."""
        if self.result_file(name).exists():
            return
        # Pinned, not "auto": a machine with AMX would otherwise evaluate in bfloat16.
        model = {**model, "dtype": self.eval_dtype}
        config = {"model": model, "cache_dir": str(self.work / "answer_cache"), **(extra or {})}
        config_path = self.work / "eval_configs" / f"{name}.json"
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config_path.write_text(json.dumps(config, indent=2) + "\n")
        args = ["benchmarks/zero_shot.py", "corpus/gner", "--config", str(config_path), "--n", str(self.test_n)]
        args += ["--batch-size", "16", "--threads", str(self.threads), "--output", str(self.result_file(name))]
        for s in sets:
            args += ["--set", s]
        self.call(args + (["--describe-labels"] if describe_labels else []), f"eval_{name}")

    def needs_training(self, name: str, out: Path) -> bool:
        """Whether row `name` still needs its adapter trained into `out`: not
        when the adapter is there, nor when its result is (committed results
        outlive the `--work` folder of the machine that trained it)."""
        return not (out / "adapter" / "adapter_model.safetensors").exists() and not self.result_file(name).exists()

    def fold_sets(self, fold: str) -> List[str]:
        return [f"crossner_{fold}", MIT]

    def default_model(self, adapter: Optional[Path] = None, **settings: Any) -> Dict[str, Any]:
        return {
            "@misc": "spacy_recot.PackagedCausal.v4",
            "name": self.model,
            "adapter": adapter and str(adapter),
            **settings,
        }


# Stages ---------------------------------------------------------------------


def stage_zero_shot(p: Protocol) -> None:
    sets = [f"crossner_{d}" for d in p.held_out] + [MIT]
    p.evaluate("zero_shot", sets, p.default_model())


def stage_records(p: Protocol) -> None:
    """Sample the training sentences: `per_domain` from each domain's train+dev
    (the same for every fold), `grpo_per_domain` other ones for GRPO prompts,
    and `pile` Pile-NER passages."""
    from spacy_recot.jsonl import load_jsonl, write_jsonl

    if not p.records_file("sft_pool").exists():
        _sample_pools(p)
    # GRPO prompts need no chain: the per-fold files are written here, so the
    # rows without chains (grpo_zero) do not wait for the 79-minute teacher.
    for fold in p.held_out:
        if not p.records_file(f"grpo_{fold}").exists():
            keys = ("sentence", "schema", "entities", "source")
            pool = load_jsonl(p.records_file("grpo_pool"))
            n = write_jsonl(
                p.records_file(f"grpo_{fold}"), ({k: r[k] for k in keys} for r in pool if r["source"] != fold)
            )
            p.log(f"fold {fold}: {n} GRPO prompts")


def _sample_pools(p: Protocol) -> None:
    from spacy_recot import cot_data as cd
    from spacy_recot.jsonl import write_jsonl

    rng = random.Random(p.seed)
    sft, grpo = [], []
    for domain in DOMAINS:
        pool = []
        for split in ("train", "dev"):
            path = ROOT / "corpus" / "crossner" / domain / f"{split}.spacy"
            if not path.exists():
                raise typer.BadParameter(f"{path} is missing: run `spacy project run convert` first")
            pool += cd.read_training_records(path)
        # Sentences without an entity teach little here and cost as much.
        pool = [r for r in pool if r["entities"]]
        rng.shuffle(pool)
        sft += pool[: p.per_domain]
        grpo += pool[p.per_domain : p.per_domain + p.grpo_per_domain]
    pile = cd.read_training_records(Path(p.pile_ner))
    rng.shuffle(pile)
    sft += [{**r, "source": "pile-ner"} for r in pile[: p.pile]]
    for name, records in (("sft_pool", sft), ("grpo_pool", grpo)):
        write_jsonl(p.records_file(name), records)
    p.log(f"records: {len(sft)} for SFT, {len(grpo)} for GRPO")


def stage_chains(p: Protocol) -> None:
    """The default model writes a reasoning chain for every SFT sentence with
    the gold entities shown (ReasoningNER's recipe, a weaker teacher); the
    record is answered with the gold entities and kept when the chain is
    complete and names each of them. Then the per-fold SFT files (the same
    sentences for every row)."""
    from spacy_recot import cot_chains as cc
    from spacy_recot import cot_data as cd
    from spacy_recot.cli import load_backend
    from spacy_recot.jsonl import load_jsonl, write_jsonl

    chains = p.chains_dir()
    if not (chains / "validated.done").exists():
        records = [{**r, "gold": r["entities"], "cot": ""} for r in load_jsonl(p.records_file("sft_pool"))]
        for r in records:
            r.pop("entities")
        start = time.perf_counter()
        teacher = load_backend(json.dumps(p.default_model(max_new_tokens=p.teacher_tokens)), "teacher")
        counts = cc.teach(records, chains / "annotated.jsonl", teacher, show_gold=True, batch_size=16)
        p.add_time("chains", time.perf_counter() - start)
        counts.update(
            cc.validate(
                cd.read_stage(chains / "annotated.jsonl"),
                chains / "validated.jsonl",
                chains / "rejected_validation.jsonl",
                gold_answer=True,
            )
        )
        (chains / "counts.json").write_text(json.dumps(dict(counts), indent=2) + "\n")
        (chains / "validated.done").write_text("")
        p.log(f"chains: {dict(counts)}")
    kept = cd.read_stage(chains / "validated.jsonl")
    for fold in p.held_out:
        rows = write_jsonl(p.records_file(f"sft_{fold}"), (cd.ner_cot_record(r) for r in kept if r["source"] != fold))
        p.log(f"fold {fold}: {rows} SFT records")


def _sft_args(p: Protocol, data: Path, out: Path, model: str, seed: int) -> List[str]:
    args = ["training/train_sft.py", str(data), "--model", model, "--output-dir", str(out), "--lora"]
    args += ["--no-merge", "--lr", str(p.lr), "--epochs", str(p.epochs), "--batch-size", "1"]
    args += ["--grad-accum", str(p.grad_accum), "--warmup", "0.03", "--max-length", "2048"]
    args += ["--lora-r", str(p.lora_r), "--lora-alpha", str(2 * p.lora_r), "--save-steps", "4", "--seed", str(seed)]
    return args + ["--resume"]


def _base_folder(name: str) -> str:
    from spacy_recot.backends.packaged import materialize

    return str(materialize(name))


def stage_sft(p: Protocol, row: str, fold: str) -> None:
    out = p.run_dir(row, fold)
    if p.needs_training(f"{row}_{fold}", out):
        args = _sft_args(p, p.records_file(f"sft_{fold}"), out, _base_folder(p.model), p.seed)
        args += ["--prompt", "zero-shot-json"] + (["--no-cot"] if row == "sft_answers" else [])
        p.call(args, f"train_{row}_{fold}")
    extra = {"max_new_tokens": p.cot_tokens} if row == "sft_cot" else {}
    p.evaluate(f"{row}_{fold}", p.fold_sets(fold), p.default_model(out / "adapter", **extra))


def stage_grpo(p: Protocol, row: str, fold: str) -> None:
    from spacy_recot.adapters import read_adapter, stack_adapters, write_adapter

    out = p.run_dir(row, fold)
    cot = row == "grpo_cot"
    if p.result_file(f"{row}_{fold}").exists():
        return
    if p.needs_training(f"{row}_{fold}", out):
        args = ["training/train_grpo.py", str(p.records_file(f"grpo_{fold}")), "--model", _base_folder(p.model)]
        args += ["--output-dir", str(out), "--lora", "--no-merge", "--prompt", "zero-shot-json"]
        args += ["--lora-r", str(p.lora_r), "--lora-alpha", str(2 * p.lora_r)]
        # Two prompts' groups per step, in micro-batches of two completions: a 1.5B
        # micro-batch of four peaked at 22 GB here.
        args += ["--num-generations", str(p.grpo_generations), "--batch-size", "2"]
        args += ["--grad-accum", str(p.grpo_generations), "--num-iterations", "1", "--lr", str(p.grpo_lr)]
        args += ["--warmup", "0"]
        args += ["--max-completion-length", str(p.cot_tokens if cot else p.answer_tokens)]
        # Without it a 1.5B step keeps ~20 GB of activations on the CPU (killed for memory here).
        # A checkpoint every step: a CoT step takes most of an hour on a 2-core CPU.
        args += ["--save-steps", "1", "--seed", str(p.seed), "--resume", "--gradient-checkpointing"]
        if cot:
            sft = p.run_dir("sft_cot", fold) / "adapter"
            if not (sft / "adapter_model.safetensors").exists():
                raise RuntimeError(f"grpo_cot needs the sft_cot adapter of fold {fold}: run that stage first")
            args += ["--adapter", str(sft)]
        p.call(args, f"train_{row}_{fold}")
    adapter = out / "adapter"
    if cot:
        # The CoT-tuned adapter and the GRPO one on top of it, as one adapter.
        stacked = p.adapter(row, fold)
        if not (stacked / "adapter_model.safetensors").exists():
            parts = [read_adapter(p.run_dir("sft_cot", fold) / "adapter"), read_adapter(adapter)]
            write_adapter(stack_adapters(parts), stacked, dtype=None)
        adapter = stacked
    extra = {"max_new_tokens": p.cot_tokens} if cot else {}
    p.evaluate(f"{row}_{fold}", p.fold_sets(fold), p.default_model(adapter, **extra))


def stage_bio(p: Protocol, fold: str) -> None:
    """RCLoss against cross-entropy: ReCoT's BIO output, LoRA on the smaller
    packaged model, three seeds each; and that model zero-shot on the same prompt."""
    bio = {"prompt": {"@misc": "spacy_recot.ReCoTPrompt.v1"}}

    def model(adapter: Optional[Path] = None) -> Dict[str, Any]:
        # Free decoding: the grammar is for entity lists; the BIO reader aligns the words.
        return {**p.default_model(adapter), "name": p.bio_model, "constrained": False, "max_new_tokens": 512}

    p.evaluate(f"bio_zero_shot_{fold}", p.fold_sets(fold), model(), bio)
    for seed in p.seeds:
        for loss in LOSSES:
            row = f"bio_{loss}_s{seed}"
            out = p.run_dir(row, fold)
            if p.needs_training(f"{row}_{fold}", out):
                args = _sft_args(p, p.records_file(f"sft_{fold}"), out, _base_folder(p.bio_model), seed)
                args += ["--format", "bio", "--loss", loss, "--prompt", "zero-shot-json"]
                p.call(args, f"train_{row}_{fold}")
            p.evaluate(f"{row}_{fold}", p.fold_sets(fold), model(out / "adapter"), bio)


def stage_ship(p: Protocol) -> None:
    """The winning row trained on every domain's SFT sentences, shipped in float16
    and evaluated as shipped."""
    from spacy_recot import cot_data as cd
    from spacy_recot.adapters import SHIPPED_DIR, read_adapter, write_adapter
    from spacy_recot.jsonl import write_jsonl

    if p.ship_row != "sft_answers":
        raise typer.BadParameter(f"--ship-row {p.ship_row!r}: only sft_answers is wired to ship")
    data = p.records_file("sft_all")
    if not data.exists():
        kept = cd.read_stage(p.chains_dir() / "validated.jsonl")
        p.log(f"ship: {write_jsonl(data, (cd.ner_cot_record(r) for r in kept))} SFT records from all domains")
    out = p.run_dir(p.ship_row, "all")
    if not (out / "adapter" / "adapter_model.safetensors").exists():
        args = _sft_args(p, data, out, _base_folder(p.model), p.seed) + ["--prompt", "zero-shot-json", "--no-cot"]
        p.call(args, f"train_{p.ship_row}_all")
    shipped = SHIPPED_DIR / SHIPPED_NAME
    if not (shipped / "adapter_model.safetensors").exists():
        write_adapter(read_adapter(out / "adapter"), shipped, dtype="float16")
        p.log(f"ship: wrote {shipped}")
    # MIT-Movie first: still zero-shot, the number that says most.
    sets = [MIT] + [f"crossner_{d}" for d in DOMAINS]
    p.evaluate("shipped", sets, p.default_model(SHIPPED_NAME))


def run_stage(p: Protocol, stage: str, folds: List[str]) -> None:
    if stage == "zero_shot":
        stage_zero_shot(p)
    elif stage == "records":
        stage_records(p)
    elif stage == "chains":
        stage_chains(p)
    elif stage in ("sft_answers", "sft_cot"):
        for fold in folds:
            stage_sft(p, stage, fold)
    elif stage in ("grpo_cot", "grpo_zero"):
        for fold in folds:
            stage_grpo(p, stage, fold)
    elif stage == "definitions":
        for fold in folds:
            p.evaluate(f"definitions_{fold}", p.fold_sets(fold), p.default_model(), describe_labels=True)
        # And with the trained model: the shipped adapter (all five CrossNER domains)
        # on MIT-Movie, still zero-shot for it; compared with `shipped` by `report`.
        if p.result_file("shipped").exists():
            p.evaluate("shipped_definitions", [MIT], p.default_model(SHIPPED_NAME), describe_labels=True)
    elif stage == "bio":
        for fold in folds:
            stage_bio(p, fold)
    elif stage == "ship":
        stage_ship(p)
    else:
        raise typer.BadParameter(f"--only: unknown stage {stage!r}; stages: {', '.join(STAGES)}")


# Command line ---------------------------------------------------------------


@app.command()
def run(
    only: List[str] = typer.Option(
        [], "--only", help=f"Only these stages (default: all, in order: {', '.join(STAGES)})."
    ),
    fold: List[str] = typer.Option([], "--fold", help="Only these held-out domains (default: --held-out)."),
    held_out: List[str] = typer.Option(["politics", "science"], "--held-out", help="The held-out domains (folds)."),
    model: str = typer.Option("qwen2.5-coder-1.5b-instruct", "--model", help="The packaged model trained."),
    bio_model: str = typer.Option("qwen2.5-coder-0.5b-instruct", "--bio-model", help="The model of the RCLoss runs."),
    per_domain: int = typer.Option(30, "--per-domain", help="SFT sentences per training domain."),
    grpo_per_domain: int = typer.Option(6, "--grpo-per-domain", help="GRPO prompts per training domain."),
    pile: int = typer.Option(32, "--pile", help="Pile-NER passages added to every fold's SFT data."),
    pile_ner: Path = typer.Option(
        ROOT.parent / "shared" / "data" / "pile-ner-sample" / "sample_data.json", "--pile-ner"
    ),
    test_n: int = typer.Option(100, "--test-n", help="Test sentences per set (the first N)."),
    lr: float = typer.Option(2e-4, "--lr"),
    epochs: float = typer.Option(1.0, "--epochs"),
    grad_accum: int = typer.Option(4, "--grad-accum"),
    lora_r: int = typer.Option(16, "--lora-r"),
    grpo_lr: float = typer.Option(2e-5, "--grpo-lr"),
    grpo_generations: int = typer.Option(4, "--grpo-generations"),
    teacher_tokens: int = typer.Option(400, "--teacher-tokens"),
    cot_tokens: int = typer.Option(512, "--cot-tokens", help="Answer cap for models that reason first."),
    answer_tokens: int = typer.Option(160, "--answer-tokens", help="GRPO completion cap without reasoning."),
    seeds: List[int] = typer.Option([1, 2, 3], "--seed-of-bio", help="Seeds of the RCLoss / cross-entropy runs."),
    seed: int = typer.Option(0, "--seed"),
    ship_row: str = typer.Option("sft_answers", "--ship-row", help="The row `ship` trains on all domains."),
    threads: int = typer.Option(2, "--threads"),
    eval_dtype: str = typer.Option(
        "float32",
        "--eval-dtype",
        help="Precision of every evaluation, whatever the CPU: the dtype alone changes greedy answers, so "
        "rows evaluated in different ones are not comparable.",
    ),
    work: Path = typer.Option(ROOT / "training_out" / "protocol", "--work", help="Models, data, logs, answer cache."),
    results: Path = typer.Option(ROOT / "benchmarks" / "results" / "protocol", "--results", help="Evaluations (JSON)."),
) -> None:
    """Run the protocol's stages in order, skipping what is done."""
    settings = {k: v for k, v in locals().items() if k not in ("only", "fold")}
    for name in held_out:
        if name not in DOMAINS:
            raise typer.BadParameter(f"--held-out {name!r}: not a CrossNER domain ({', '.join(DOMAINS)})")
    p = Protocol(**settings)
    p.work.mkdir(parents=True, exist_ok=True)
    (p.work / "settings.json").write_text(json.dumps(settings, indent=2, default=str) + "\n")
    for stage in only or STAGES:
        run_stage(p, stage, fold or held_out)


def _scores(result: Dict[str, Any], sets: List[str]) -> Dict[str, Any]:
    """Exact P/R/F per set and pooled (micro over the sets' sentences), and the
    normalized F1 per set, from a zero_shot.py result."""
    out: Dict[str, Any] = {}
    for name in sets:
        res = result["datasets"].get(name)
        if res is not None:
            out[name] = {
                "p": res["ents_p"],
                "r": res["ents_r"],
                "f": res["ents_f"],
                "normalized_f": res["normalized"]["f"],
                "seconds": res["seconds"],
                "unparseable": res["counts"].get("unparseable", 0),
            }
    return out


def _only(result: Dict[str, Any], sets: List[str]) -> Dict[str, Any]:
    """A zero_shot.py result restricted to `sets`."""
    return {"datasets": {k: v for k, v in result["datasets"].items() if k in sets}}


def _summary(d: Dict[str, Any]) -> Dict[str, Any]:
    """What the table keeps of a compare_runs result."""
    return {
        "f1": d["micro_f1_b"],
        "difference": d["micro_f1_difference"],
        "interval": d["bootstrap_95_interval_of_difference"],
        "changed_docs": d["changed_docs"],
    }


def _difference(d: Dict[str, Any]) -> str:
    low, high = d["interval"]
    return f"{100 * d['difference']:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"


def _prf(scores: Dict[str, Any], key: str) -> str:
    s = scores.get(key)
    return f"{100 * s['p']:.1f} / {100 * s['r']:.1f} / {100 * s['f']:.1f}" if s else "-"


@app.command()
def report(
    work: Path = typer.Option(ROOT / "training_out" / "protocol", "--work"),
    results: Path = typer.Option(ROOT / "benchmarks" / "results" / "protocol", "--results"),
    data: Path = typer.Option(ROOT / "corpus" / "gner", "--data", help="The converted test sets (gold entities)."),
    samples: int = typer.Option(1000, "--samples", help="Bootstrap resamples."),
) -> None:
    """The ablation table: per fold and row, exact P/R/F on the held-out domain
    and MIT-Movie, and the paired bootstrap interval of the F1 difference from
    the zero-shot row on each (and pooled over both, in the JSON). Writes
    protocol.json beside the evaluations and prints a markdown table."""
    from spacy_recot.evaluation import compare_runs

    # The run's settings; on a fresh clone (no --work folder) those of the committed table.
    for source in (work / "settings.json", results / "protocol.json"):
        if source.exists():
            settings = json.loads(source.read_text())
            settings = settings.get("settings", settings) if source.name == "protocol.json" else settings
            break
    else:
        raise typer.BadParameter(
            f"Neither {work / 'settings.json'} nor {results / 'protocol.json'} exists: run the protocol first"
        )
    times = json.loads((results / "times.json").read_text()) if (results / "times.json").exists() else {}
    zero = results / "zero_shot.json"
    if not zero.exists():
        raise typer.BadParameter(f"{zero} is missing: run the zero_shot stage first")
    zero_shot = json.loads(zero.read_text())
    table: Dict[str, Any] = {"settings": settings, "folds": {}}
    lines = [
        "| fold | row | held-out P / R / F | MIT-Movie P / R / F | held-out F1 difference (95% interval) | "
        "MIT-Movie F1 difference | reference | eval dtype | train min | eval min |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for fold in settings["held_out"]:
        sets = [f"crossner_{fold}", MIT]
        names = ["zero_shot"] + [f"{row}_{fold}" for row in ROWS]
        names += sorted(p.stem for p in results.glob(f"bio_*_{fold}.json"))
        fold_rows: Dict[str, Any] = {}
        for name in names:
            path = results / f"{name}.json"
            if not path.exists():
                continue
            result = json.loads(path.read_text())
            # The zero-shot row of a fold: its two sets out of the shared evaluation.
            reference = zero_shot
            base = "bio_zero_shot_" + fold if name.startswith("bio_") else None
            if base and (results / f"{base}.json").exists():
                reference = json.loads((results / f"{base}.json").read_text())
            # Per set (held-out domain, MIT-Movie) and pooled over both.
            diffs = {
                key: compare_runs(_only(reference, keep), _only(result, keep), data, samples)
                for key, keep in (*((s, [s]) for s in sets), ("pooled", sets))
            }
            row = {
                "scores": _scores(result, sets),
                "dtype": result.get("dtype"),
                "differences": {key: _summary(d) for key, d in diffs.items()},
                "reference": base or "zero_shot",
                "train_minutes": times.get(f"train_{name}", 0.0) / 60,
                "eval_minutes": times.get(f"eval_{name}", 0.0) / 60,
            }
            fold_rows[name] = row
            cells = [fold, name.removesuffix("_" + fold), _prf(row["scores"], sets[0]), _prf(row["scores"], MIT)]
            cells += [_difference(row["differences"][s]) for s in sets]
            cells += [row["reference"].removesuffix("_" + fold), str(row["dtype"]).removeprefix("torch.")]
            cells += [f"{row[k]:.0f}" if row[k] else "-" for k in ("train_minutes", "eval_minutes")]
            lines.append("| " + " | ".join(cells) + " |")
        table["folds"][fold] = fold_rows
    # Label definitions written by the trained model: the shipped adapter on MIT-Movie.
    shipped, defined = results / "shipped.json", results / "shipped_definitions.json"
    if shipped.exists() and defined.exists():
        base, result = _only(json.loads(shipped.read_text()), [MIT]), json.loads(defined.read_text())
        difference = _summary(compare_runs(base, _only(result, [MIT]), data, samples))
        scores, reference_scores = _scores(result, [MIT]), _scores(base, [MIT])
        table["shipped_definitions"] = {
            "scores": scores,
            "reference_scores": reference_scores,
            "dtype": result.get("dtype"),
            "difference": difference,
            "eval_minutes": times.get("eval_shipped_definitions", 0.0) / 60,
        }
        lines += [
            "",
            "| shipped adapter on MIT-Movie | P / R / F | F1 difference (95% interval) | eval dtype |",
            "|---|---|---|---|",
            f"| without definitions | {_prf(reference_scores, MIT)} | - | - |",
            f"| with its own label definitions | {_prf(scores, MIT)} | {_difference(difference)} | "
            f"{str(result.get('dtype')).removeprefix('torch.')} |",
        ]
    results.mkdir(parents=True, exist_ok=True)
    (results / "protocol.json").write_text(json.dumps(table, indent=2) + "\n")
    typer.echo("\n".join(lines))


if __name__ == "__main__":
    app()
