"""LoRA adapters: read, merge into a model's weights in memory, stack, write.

An adapter is a folder in peft's format (`adapter_config.json` and
`adapter_model.safetensors`, as `save_pretrained` of a peft model writes it).
It is read without peft (a training dependency) and without running anything
from the folder: the config is plain JSON, the tensors are safetensors (never
unpickled). Merging adds `scale * B @ A` to each adapted linear weight, in
float32, then casts back to the weight's dtype, so the model runs exactly as
fast as without the adapter.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple, Union

from .errors import ModelLoadError

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
# peft's prefix of every key in a saved causal-LM adapter.
_PEFT_PREFIX = "base_model.model."
# Settings this reader does not implement: an adapter that uses them is refused,
# not merged wrongly.
_UNSUPPORTED = {
    "use_dora": False,
    "fan_in_fan_out": False,
    "bias": "none",
    "lora_bias": False,
    "modules_to_save": None,
    "rank_pattern": {},
    "alpha_pattern": {},
}


@dataclass
class LoraAdapter:
    """The pairs (A, B) of a LoRA adapter, by the name of the linear module they
    adapt (e.g. "model.layers.0.self_attn.q_proj"), and one scale for all.

    weights (Dict[str, Tuple[Any, Any]]): module name -> (A of shape [r, in],
        B of shape [out, r]) as torch tensors.
    scale (float): lora_alpha / r (lora_alpha / sqrt(r) with rsLoRA).
    source (str): Where it was read from, for messages.
    """

    weights: Dict[str, Tuple[Any, Any]]
    scale: float
    source: str = ""

    @property
    def rank(self) -> int:
        return max((a.shape[0] for a, _ in self.weights.values()), default=0)

    def delta(self, name: str) -> Any:
        """The float32 update `scale * B @ A` of the module `name`."""
        a, b = self.weights[name]
        return (b.float() @ a.float()) * self.scale


def read_adapter(path: Union[str, Path]) -> LoraAdapter:
    """Read the LoRA adapter in the folder `path`; a clear error names the file
    and the setting when it is missing, malformed or uses what is not supported."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(path).expanduser()
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise ModelLoadError(
            f"No LoRA adapter at '{folder}' (model.adapter): expected {CONFIG_FILE} and {WEIGHTS_FILE} "
            "(a peft adapter folder, as train_sft.py --lora writes under adapter/)"
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"{config_path}: not a JSON adapter config ({err})") from None
    if not isinstance(config, dict):
        raise ModelLoadError(f"{config_path}: expected a JSON object")
    if config.get("peft_type", "LORA") != "LORA":
        raise ModelLoadError(f"{config_path}: peft_type {config.get('peft_type')!r} is not LORA")
    for key, plain in _UNSUPPORTED.items():
        if config.get(key) not in (None, plain, [], {}):
            raise ModelLoadError(f"{config_path}: {key} = {config[key]!r} is not supported (only {plain!r})")
    r, alpha = config.get("r"), config.get("lora_alpha")
    if not isinstance(r, int) or r < 1 or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        raise ModelLoadError(f"{config_path}: r must be a positive integer and lora_alpha a number")
    scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelLoadError(f"{weights_path}: not a safetensors file ({err})") from None
    pairs: Dict[str, Dict[str, Any]] = {}
    for key, tensor in tensors.items():
        name = key.removeprefix(_PEFT_PREFIX)
        for part in ("lora_A", "lora_B"):
            marker = f".{part}."
            if marker in name:
                module, _, rest = name.partition(marker)
                if rest not in ("weight", "default.weight"):
                    break
                pairs.setdefault(module, {})[part] = tensor
                break
        else:
            raise ModelLoadError(f"{weights_path}: tensor '{key}' is not a LoRA A or B weight")
    weights = {}
    for module, pair in sorted(pairs.items()):
        if set(pair) != {"lora_A", "lora_B"}:
            raise ModelLoadError(f"{weights_path}: module '{module}' has only {sorted(pair)}")
        a, b = pair["lora_A"], pair["lora_B"]
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[1]:
            raise ModelLoadError(
                f"{weights_path}: module '{module}' has A {tuple(a.shape)} and B {tuple(b.shape)}, "
                "which do not make a LoRA pair"
            )
        weights[module] = (a, b)
    if not weights:
        raise ModelLoadError(f"{weights_path}: holds no LoRA weights")
    return LoraAdapter(weights, float(scale), str(folder))


def merge_adapter(model: Any, adapter: Union[LoraAdapter, str, Path]) -> int:
    """Add the adapter's update to the model's linear weights, in place; returns
    how many modules changed. Every adapted module must exist with the right
    shape (an adapter made for another model is refused, nothing changed)."""
    import torch

    if not isinstance(adapter, LoraAdapter):
        adapter = read_adapter(adapter)
    modules = dict(model.named_modules())
    targets = []
    for name, (a, b) in adapter.weights.items():
        module = modules.get(name)
        weight = getattr(module, "weight", None)
        if weight is None or tuple(weight.shape) != (b.shape[0], a.shape[1]):
            shape = None if weight is None else tuple(weight.shape)
            raise ModelLoadError(
                f"The adapter at '{adapter.source}' (model.adapter) adapts '{name}' with a "
                f"{b.shape[0]}x{a.shape[1]} update, but the model's module has weight {shape}: "
                "it was made for another model"
            )
        targets.append((name, weight))
    with torch.no_grad():
        for name, weight in targets:
            delta = adapter.delta(name).to(weight.device)
            weight.copy_((weight.float() + delta).to(weight.dtype))
    return len(targets)


def stack_adapters(adapters: Iterable[LoraAdapter]) -> LoraAdapter:
    """One adapter whose update is the sum of the given adapters' updates (ranks
    add up): a second adapter trained on top of a merged first one (GRPO after
    CoT tuning) ships as one file."""
    import torch

    adapters = list(adapters)
    names = sorted({name for adapter in adapters for name in adapter.weights})
    weights = {}
    for name in names:
        parts = [(ad.weights[name], ad.scale) for ad in adapters if name in ad.weights]
        a = torch.cat([p[0].float() for p, _ in parts], dim=0)
        b = torch.cat([p[1].float() * scale for p, scale in parts], dim=1)
        weights[name] = (a, b)
    return LoraAdapter(weights, 1.0, " + ".join(ad.source for ad in adapters))


def write_adapter(adapter: LoraAdapter, path: Union[str, Path], dtype: Optional[str] = "float16") -> Path:
    """Write `adapter` as a peft-format folder (readable by peft and by
    `read_adapter`), its tensors in `dtype` (None keeps them)."""
    import torch
    from safetensors.torch import save_file

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    rank = adapter.rank
    tensors = {}
    for name, (a, b) in adapter.weights.items():
        if a.shape[0] != rank:  # one rank for the folder: pad with zero rows and columns
            a = torch.cat([a, a.new_zeros(rank - a.shape[0], a.shape[1])])
            b = torch.cat([b, b.new_zeros(b.shape[0], rank - b.shape[1])], dim=1)
        cast = (lambda t: t.to(getattr(torch, dtype))) if dtype else (lambda t: t)
        tensors[f"{_PEFT_PREFIX}{name}.lora_A.weight"] = cast(a).contiguous()
        tensors[f"{_PEFT_PREFIX}{name}.lora_B.weight"] = cast(b).contiguous()
    save_file(tensors, str(folder / WEIGHTS_FILE))
    modules = sorted({name.rsplit(".", 1)[-1] for name in adapter.weights})
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": rank,
        "lora_alpha": adapter.scale * rank,
        "target_modules": modules,
        "lora_dropout": 0.0,
        "bias": "none",
        "use_rslora": False,
        "use_dora": False,
        "fan_in_fan_out": False,
    }
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return folder


def adapter_digest(path: Union[str, Path]) -> str:
    """sha256 of an adapter folder's two files (what a pipeline records of it)."""
    import hashlib

    h = hashlib.sha256()
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        h.update((Path(path) / name).read_bytes())
    return h.hexdigest()


def copy_adapter(source: Union[str, Path], target: Union[str, Path]) -> Path:
    """Copy the adapter folder `source` to `target` byte for byte, once
    `read_adapter` has accepted it (so its digest stays what it was)."""
    import shutil

    read_adapter(source)
    folder = Path(target)
    folder.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        shutil.copyfile(Path(source) / name, folder / name)
    return folder


def adapter_summary(adapter: LoraAdapter) -> Dict[str, Any]:
    """Rank, scale, module count and parameters, for logs and results."""
    return {
        "rank": adapter.rank,
        "scale": adapter.scale,
        "modules": len(adapter.weights),
        "parameters": sum(a.numel() + b.numel() for a, b in adapter.weights.values()),
    }


# Adapters that ship inside this package, by name (folders under adapters/).
SHIPPED_DIR = Path(__file__).parent / "shipped_adapters"


def shipped_adapters() -> Dict[str, Path]:
    """The adapters shipped with the package: name -> folder."""
    if not SHIPPED_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(SHIPPED_DIR.iterdir()) if (p / CONFIG_FILE).is_file()}


def shipped_name(folder: Union[str, Path]) -> Optional[str]:
    """The name of the shipped adapter whose files `folder` holds byte for byte
    (a pipeline's copy of one included), else None."""
    folder = Path(folder)

    def sizes(path: Path) -> Tuple[int, ...]:
        return tuple(
            (path / name).stat().st_size if (path / name).is_file() else -1 for name in (CONFIG_FILE, WEIGHTS_FILE)
        )

    for name, shipped in shipped_adapters().items():
        # Sizes first: only an adapter of the same size is hashed.
        if sizes(folder) == sizes(shipped) and adapter_digest(folder) == adapter_digest(shipped):
            return name
    return None


def resolve_adapter(value: Union[str, Path]) -> Path:
    """The folder of the adapter `value`: the name of a shipped adapter, or a
    folder path; a clear error when it is neither."""
    shipped = shipped_adapters()
    if str(value) in shipped:
        return shipped[str(value)]
    folder = Path(value).expanduser()
    if not folder.is_dir():
        names = ", ".join(sorted(shipped)) or "none"
        raise ModelLoadError(
            f"No LoRA adapter '{value}' (model.adapter): not a folder, nor a shipped adapter (shipped: {names})"
        )
    return folder
