"""Loading Hugging Face weights safely and with one copy in memory: no code
run from a folder unless the user trusts it by name, clear errors for a
missing model, safetensors read into owned memory where weights will be
rewritten, and saving a model loaded from GGUF."""

import json
import os
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple, Union

from ..errors import ModelLoadError


def _looks_like_path(name_or_path: str) -> bool:
    return (
        name_or_path.startswith((".", "/", "~"))
        or os.sep in name_or_path.strip("/").replace("/", "", 1)
        or (os.name == "nt" and ":" in name_or_path)
    )


# The environment variable that names the models (comma-separated, as written in
# model.name_or_path) whose own Python code the user has read and trusts: set when
# running, never in a config, and never applied to a pipeline folder.
TRUST_REMOTE_CODE_ENV = "SPACY_RECOT_TRUST_REMOTE_CODE"


def trusts_remote_code(name_or_path: str) -> bool:
    """Whether the user trusts the code that comes with `name_or_path` (named in
    $SPACY_RECOT_TRUST_REMOTE_CODE when running)."""
    names = os.environ.get(TRUST_REMOTE_CODE_ENV, "")
    return str(name_or_path) in {name.strip() for name in names.split(",") if name.strip()}


def load_pretrained(
    loader: Any, name_or_path: Union[str, Path], *, trust_remote_code: bool = False, **kwargs: Any
) -> Any:
    """`loader.from_pretrained(name_or_path)` with an error that says what to do.

    trust_remote_code (bool): Run Python code that comes with the model (its
        config's `auto_map`). Always passed, so transformers never asks on the
        terminal whether to run it (a careless "y" would).
    """
    source = str(name_or_path)
    if _looks_like_path(source) and not Path(source).expanduser().exists():
        raise ModelLoadError(f"No model folder at '{source}' (model.name_or_path): the path does not exist.")
    try:
        return loader.from_pretrained(source, trust_remote_code=trust_remote_code, **kwargs)
    except (OSError, ValueError) as err:
        if "trust_remote_code" in str(err):
            raise ModelLoadError(
                f"'{source}' (model.name_or_path) holds custom code that transformers would have to "
                "run to load it: refused. A pipeline folder's code is never run; for a model whose code "
                f"you have read, name it when running: {TRUST_REMOTE_CODE_ENV}={source}"
            ) from None
        where = (
            "the folder has no loadable model in it"
            if Path(source).expanduser().is_dir()
            else "it is not a local folder, and the Hugging Face Hub could not provide it "
            "(no network, or no such model)"
        )
        raise ModelLoadError(
            f"Could not load '{source}' (model.name_or_path) with {loader.__name__}: {where}. "
            f"{type(err).__name__}: {err}"
        ) from err


def save_dequantized(model: Any, path: Path) -> None:
    """`save_pretrained` that also works for a model loaded from a GGUF file.

    transformers dequantizes GGUF weights to float on load but keeps the GGUF
    quantizer attached, which refuses to save; the weights are plain floats,
    so that quantizer (and only that one) is dropped and they are saved as
    safetensors.
    """
    quantizer = getattr(model, "hf_quantizer", None)
    method = getattr(getattr(quantizer, "quantization_config", None), "quant_method", None)
    if quantizer is not None and str(getattr(method, "value", method)) == "gguf":
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    model.save_pretrained(path)


def state_tensors(model: Any) -> Iterator[Tuple[str, Any]]:
    """The (name, tensor) pairs of `model.state_dict()`, in its order, one at a
    time: a weight packed for oneDNN is made dense only while it is read, where
    `state_dict()` would hold a dense copy of every packed weight at once (as much
    memory again as the model's linear layers)."""
    import torch

    from ..generation.int4_weights import dequantized

    for prefix, module in model.named_modules(remove_duplicate=False):
        prefix = f"{prefix}." if prefix else ""
        if getattr(module, "int4_weight", None) is not None:
            # A 4-bit layer's weight, as it computes with it (made while read).
            yield prefix + "weight", dequantized(module)
        for name, param in module._parameters.items():
            if param is not None:
                yield prefix + name, param.to_dense() if param.layout == torch._mkldnn else param
        for name, buffer in module._buffers.items():
            if buffer is not None and name not in module._non_persistent_buffers_set:
                yield prefix + name, buffer


def read_weights(folder: Path, model_class: Any, dtype: Any) -> Optional[Dict[str, Any]]:
    """The safetensors weights of a local model folder, read into memory this
    process owns, each floating-point tensor cast to `dtype` as it is read
    (except in the modules the model class keeps in float32); None when the
    folder has no safetensors weights.

    Why not transformers' default, a memory map of the file: a weight changed in
    place after loading (a merged adapter) becomes a private copy inside the
    mapping, and the mapping lives as long as any weight read from it does, so
    a weight replaced afterwards (packed for oneDNN) keeps its old pages: two
    copies of the linear layers. And a file in another precision is cast whole
    beside itself. Read one tensor at a time, the peak is the weights as they
    run plus one tensor (benchmarks/memory.py).
    """
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    elif (folder / "model.safetensors").exists():
        files = ["model.safetensors"]
    else:
        return None
    keep = tuple(getattr(model_class, "_keep_in_fp32_modules", None) or ())
    keep += tuple(getattr(model_class, "_keep_in_fp32_modules_strict", None) or ())
    state = {}
    for name in files:
        # pread: copies into the tensors' own memory, no mapping kept.
        with safe_open(str(folder / name), framework="pt", device="cpu", backend="pread") as f:
            for key in f.keys():
                tensor = f.get_tensor(key)
                if tensor.is_floating_point() and tensor.dtype != dtype and not any(m in key for m in keep):
                    tensor = tensor.to(dtype)
                state[key] = tensor
    return state


def load_model(auto_class: Any, source: str, dtype: Any, device: str, *, rewrites: bool, **kwargs: Any) -> Any:
    """`auto_class.from_pretrained(source, ...)`, reading a local safetensors
    folder with `read_weights` (into memory the process owns) when the model
    runs on the CPU and its weights are replaced after loading (`rewrites`:
    packed for oneDNN) or stored in another precision: the same weights, one
    copy. Otherwise as transformers loads them: memory-mapped,
    pages shared by every process that maps the file."""
    import torch
    import transformers

    folder = Path(source).expanduser()
    if device == "cpu" and isinstance(dtype, torch.dtype) and folder.is_dir() and not kwargs.get("trust_remote_code"):
        try:
            # Never its code: a folder that needs it is refused by load_pretrained below.
            config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
            model_class = auto_class._model_mapping[type(config)]
        except (OSError, ValueError, KeyError):
            model_class = None
        stored = getattr(config, "dtype", None) if model_class is not None else None
        stored = getattr(torch, stored, None) if isinstance(stored, str) else stored
        if (
            model_class is not None
            and getattr(config, "quantization_config", None) is None
            and (rewrites or stored != dtype)
        ):
            state = read_weights(folder, model_class, dtype)
            if state is not None:
                model = model_class.from_pretrained(None, config=config, state_dict=state, dtype=dtype)
                if (folder / "generation_config.json").exists():
                    model.generation_config = transformers.GenerationConfig.from_pretrained(folder)
                return model
    return load_pretrained(auto_class, source, dtype=dtype, device_map=device, **kwargs)
