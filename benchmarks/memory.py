"""How much memory and disk the default pipeline needs: peak RSS of a fresh child
process that loads the pipeline and tags a batch, on first use (an empty model
cache: the GGUF is converted) and on later use (the cache is read).

    OMP_NUM_THREADS=1 python benchmarks/memory.py corpus/gner --runs 3

Each measurement is its own child process (`os.wait4` gives that child's peak
RSS, as `/usr/bin/time -v` does). The child also reports its peak after loading
and its resident memory split into anonymous pages and file pages (weights
memory-mapped from the cache are file pages: the kernel can drop and re-read
them, and several processes share them). Timings are for the same child.
`--baseline CHECKOUT` measures another checkout's code the same way, alternating
with this one (its package first on PYTHONPATH), and reports the ratios.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import typer

app = typer.Typer(add_completion=False)
# The measured process: `memory.py child ...` (see _measure).
child_app = typer.Typer(add_completion=False)

GB = 1e9


def _status() -> Dict[str, float]:
    """This process's resident memory in GB, from /proc (Linux)."""
    values = {}
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                values[key] = int(value.split()[0]) * 1024 / GB
    return values


@child_app.command()
def child(
    data: Path,
    set_name: str = typer.Option(..., "--set"),
    n: int = typer.Option(..., "--n"),
    batch_size: int = typer.Option(..., "--batch-size"),
    model: str = typer.Option(..., "--model"),
    dtype: str = typer.Option(..., "--dtype"),
    adapter: str = typer.Option(..., "--adapter"),
    weights: str = typer.Option("auto", "--weights"),
) -> None:
    """Load, tag, report (one JSON line on stdout)."""
    import spacy
    import torch

    from spacy_recot.conll import read_labels
    from spacy_recot.evaluation import read_examples

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    path = data / set_name / "test.spacy"
    labels = read_labels(path)
    texts = [eg.reference.text for eg in read_examples(spacy.blank("en"), path, limit=n)]
    config: Dict[str, Any] = {"@misc": "spacy_recot.PackagedCausal.v4", "name": model, "dtype": dtype}
    config["adapter"] = None if adapter == "none" else adapter
    config["weights"] = weights
    start = time.perf_counter()
    nlp = spacy.blank("en")
    nlp.add_pipe("recot_ner", config={"labels": labels, "model": config, "batch_size": batch_size})
    nlp.initialize()
    loaded = time.perf_counter()
    after_load = _status()
    docs = list(nlp.pipe(texts, batch_size=batch_size))
    tagged = time.perf_counter()
    result = {
        "load_seconds": loaded - start,
        "tag_seconds_per_sentence": (tagged - loaded) / len(texts),
        "after_load": after_load,
        "after_tagging": _status(),
        "entities": sum(len(doc.ents) for doc in docs),
        "torch_dtype": str(next(nlp.get_pipe("recot_ner").model.model.parameters()).dtype),
    }
    print(json.dumps(result), flush=True)


def _measure(args: List[str], env: Dict[str, str]) -> Dict[str, Any]:
    cmd = [sys.executable, __file__, "child", *args]
    # Files, not pipes: a child writing more than a pipe holds would block before wait4.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True)
        # wait4 gives this child's own peak RSS (ru_maxrss, in KB on Linux).
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = status
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if status != 0:
        raise RuntimeError(f"child failed ({status}): {' '.join(cmd)}\n{stderr[-3000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_gb"] = usage.ru_maxrss * 1024 / GB
    return result


def _size(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / GB


@app.command()
def main(
    data: Path = typer.Argument(..., help="Converted GNER sets (corpus/gner)."),
    set_name: str = typer.Option("mit-movie", "--set"),
    n: int = typer.Option(16, "--n", help="Sentences tagged (the first N)."),
    batch_size: int = typer.Option(16, "--batch-size"),
    model: str = typer.Option("qwen2.5-coder-1.5b-instruct", "--model"),
    dtypes: List[str] = typer.Option(["auto"], "--dtype", help="Precisions measured (repeatable)."),
    adapter: str = typer.Option("qwen2.5-coder-1.5b-crossner-sft", "--adapter", help='"none": no adapter.'),
    weights: str = typer.Option("auto", "--weights", help='The model\'s `weights` setting ("int4": 4-bit).'),
    runs: int = typer.Option(3, "--runs", help="Later-use measurements per precision (median)."),
    first_use: bool = typer.Option(True, "--first-use/--no-first-use", help="Also measure a cold cache."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="The warm cache (default: the user's)."),
    baseline: Optional[Path] = typer.Option(
        None, "--baseline", help="Another checkout of spacy-recot, measured the same way, alternating with this one."
    ),
    output: Path = typer.Option(Path("benchmarks/results/memory.json"), "--output", "-o"),
) -> None:
    """Peak memory, load time and cache size of the default pipeline."""
    from results_io import machine, write_results

    from spacy_recot.backends.packaged import cache_dir, get_packaged_model

    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    warm = Path(cache) if cache is not None else cache_dir()
    packaged = get_packaged_model(model)
    rows = []
    for dtype in dtypes:
        args = [str(data), "--set", set_name, "--n", str(n), "--batch-size", str(batch_size)]
        args += ["--model", model, "--dtype", dtype, "--adapter", adapter, "--weights", weights]
        row: Dict[str, Any] = {"dtype": dtype, "weights": weights}
        if first_use:
            cold = Path(tempfile.mkdtemp(prefix="recot-cold-", dir=warm.parent))
            try:
                typer.echo(f"{dtype}: first use (converting into {cold})")
                row["first_use"] = _measure(args, dict(env, SPACY_RECOT_CACHE=str(cold)))
                row["first_use"]["cache_gb"] = _size(cold)
            finally:
                shutil.rmtree(cold, ignore_errors=True)
        later: List[Dict[str, Any]] = []
        base: List[Dict[str, Any]] = []
        warm_env = dict(env, SPACY_RECOT_CACHE=str(warm))
        # The baseline's code first on the path (its own package, same interpreter and cache).
        base_env = dict(warm_env, PYTHONPATH=f"{baseline}{os.pathsep}{env.get('PYTHONPATH', '')}")
        for run in range(runs):
            typer.echo(f"{dtype}: later use, run {run + 1}/{runs}")
            # Alternate which goes first, so neither always meets a warmer page cache.
            order = [(later, warm_env), (base, base_env)] if run % 2 == 0 else [(base, base_env), (later, warm_env)]
            for results, run_env in order:
                if results is later or baseline is not None:
                    results.append(_measure(args, run_env))
        keys = ("peak_rss_gb", "load_seconds", "tag_seconds_per_sentence")
        row["later_use_runs"] = later
        row["later_use"] = {key: statistics.median(r[key] for r in later) for key in keys}
        if baseline is not None:
            row["baseline_runs"] = base
            row["baseline"] = {key: statistics.median(r[key] for r in base) for key in keys}
            row["ratio_to_baseline"] = {key: row["later_use"][key] / row["baseline"][key] for key in keys}
        row["torch_dtype"] = later[-1]["torch_dtype"] if later else row["first_use"]["torch_dtype"]
        typer.echo(f"{dtype}: {json.dumps(row['later_use'])}")
        rows.append(row)
    caches = sorted(p for p in warm.glob(f"{packaged.name}-*") if p.is_dir())
    write_results(
        output,
        {
            **machine(),
            "model": model,
            "adapter": adapter,
            "set": set_name,
            "n": n,
            "batch_size": batch_size,
            "threads": env["OMP_NUM_THREADS"],
            "baseline": str(baseline) if baseline is not None else None,
            "cache_folders": {p.name: round(_size(p), 3) for p in caches},
            "rows": rows,
        },
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        del sys.argv[1]
        child_app()
    else:
        app()
