"""Fast embedding backends behind :class:`~ctxkit.retrieval.embeddings.Embedder`, chosen by name.

* ``"torch"`` — :class:`~ctxkit.retrieval.embeddings.SentenceTransformerEmbedder` (the reference).
* ``"onnx"`` — :class:`OnnxEmbedder`: the same MiniLM exported once to ONNX (``optimum``, offline) and
  run by ONNX Runtime, with the tokenizer from the model's ``tokenizer.json``, truncation to the
  model's ``max_seq_length``, attention-masked mean pooling and L2 normalization exactly as
  sentence-transformers does. Texts are batched by token count (sorted, run, order restored) so
  little padding is computed; ONNX Runtime uses as many threads as this process may run on
  (``os.sched_getaffinity``).
* ``"onnx-int8"`` — the same export with its weights dynamically quantized to int8
  (``onnxruntime.quantization``): faster, and further from the torch vectors (measure before use).
* ``"static"`` — :class:`StaticEmbedder`: a ``model2vec`` static model distilled offline from the
  shipped MiniLM (a token-embedding lookup and a mean; no transformer at embed time). Orders of
  magnitude faster, with a recall cost; its vectors live in a different space (256-d by default),
  so an index built with it must be queried with it.

Exports and distillations are made once and cached under ``<user cache dir>/onnx`` and
``<user cache dir>/model2vec``, keyed by a hash of the model's files; each is built in a temporary
folder beside its final name and renamed into place, so an interrupted export never leaves a
half-written model behind.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ctxkit._host import native_bf16
from ctxkit._optional import require
from ctxkit.errors import InvalidInputError, ResourceError
from ctxkit.paths import fsync_dir, user_cache_dir
from ctxkit.retrieval.embeddings import (
    BaseEmbedder,
    Embedder,
    EmbeddingCache,
    SentenceTransformerEmbedder,
    default_model_path,
)

__all__ = [
    "BACKENDS",
    "Backend",
    "OnnxEmbedder",
    "StaticEmbedder",
    "default_fast_backend",
    "default_threads",
    "distill_static",
    "export_onnx",
    "make_embedder",
    "model_hash",
]

FloatArray = npt.NDArray[np.float32]
Backend = Literal["fast", "torch", "onnx", "onnx-int8", "openvino", "openvino-f32", "static"]
BACKENDS: tuple[Backend, ...] = ("fast", "torch", "onnx", "onnx-int8", "openvino", "openvino-f32", "static")

_lock = threading.Lock()
_hashes: dict[tuple[str, int, float], str] = {}
_MODEL_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json")


def default_threads() -> int:
    """CPUs this process may run on (``os.sched_getaffinity``; ``os.cpu_count`` where unavailable)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def model_hash(model: str | os.PathLike[str]) -> str:
    """A short SHA-256 over a model folder's weight, config and tokenizer files (memoized by size and mtime)."""
    folder = Path(model)
    digest = hashlib.sha256()
    found = False
    for name in _MODEL_FILES:
        f = folder / name
        if not f.is_file():
            continue
        found = True
        st = f.stat()
        memo = (str(f.resolve()), st.st_size, st.st_mtime)
        part = _hashes.get(memo)
        if part is None:
            h = hashlib.sha256()
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            part = h.hexdigest()
            _hashes[memo] = part
        digest.update(f"{name}:{part}\n".encode())
    if not found:
        raise ResourceError(f"{folder} holds no model files ({', '.join(_MODEL_FILES)}); pass a model folder")
    return digest.hexdigest()[:16]


def _publish_dir(tmp: Path, target: Path) -> None:
    """Rename a fully written temporary folder into place (another process may have won the race)."""
    try:
        os.rename(tmp, target)
    except OSError:
        if not (target / "model.onnx").is_file() and not (target / "config.json").is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    fsync_dir(target.parent)


def export_onnx(
    model: str | os.PathLike[str] | None = None,
    *,
    quantize: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Folder holding ``model.onnx`` and the tokenizer of ``model`` (default: the shipped MiniLM), made once.

    Exported with ``optimum`` (task ``feature-extraction``, offline) into
    ``<cache>/onnx/<name>-<hash>[-int8]/``. ``quantize=True`` adds dynamic int8 quantization of the
    weights (``onnxruntime.quantization.quantize_dynamic``).
    """
    src = Path(model) if model is not None else default_model_path()
    if not (src / "config.json").is_file():
        raise ResourceError(f"{src} is not a transformers model folder (no config.json); pass a local model folder")
    base = Path(cache_dir) if cache_dir is not None else user_cache_dir() / "onnx"
    stem = "all-MiniLM-L6-v2" if model is None else src.name
    key = model_hash(src)
    fp32 = base / f"{stem}-{key}"
    target = base / f"{stem}-{key}-int8" if quantize else fp32
    with _lock:
        if (target / "model.onnx").is_file():
            return target
        base.mkdir(parents=True, exist_ok=True)
        if not (fp32 / "model.onnx").is_file():
            exporters = require(
                "optimum.exporters.onnx", feature="the ONNX embedder", extra="fast", package="optimum[onnxruntime]"
            )
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            tmp = Path(tempfile.mkdtemp(dir=base, prefix=f".{fp32.name}.tmp-"))
            try:
                # The export traces the model, and torch's tracer warns from inside its C code (TracerWarning).
                # Where warnings are errors (pytest's "error" filter, python -W error) that warning leaves an
                # exception set in C and the export dies with a SystemError; the warnings are expected and not
                # the caller's to act on, so they are kept out of the one-time export.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    exporters.main_export(
                        str(src),
                        output=str(tmp),
                        task="feature-extraction",
                        library_name="transformers",
                        do_validation=False,
                    )
                for extra in ("sentence_bert_config.json", "1_Pooling", "modules.json"):
                    if (src / extra).is_dir():
                        shutil.copytree(src / extra, tmp / extra)
                    elif (src / extra).is_file():
                        shutil.copy2(src / extra, tmp / extra)
                if not (tmp / "model.onnx").is_file() or not (tmp / "tokenizer.json").is_file():
                    raise ResourceError(f"optimum did not write model.onnx and tokenizer.json for {src}")
                _publish_dir(tmp, fp32)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        if quantize:
            qmod = require(
                "onnxruntime.quantization", feature="int8 ONNX embeddings", extra="fast", package="onnxruntime"
            )
            tmp = Path(tempfile.mkdtemp(dir=base, prefix=f".{target.name}.tmp-"))
            try:
                for f in fp32.iterdir():
                    if f.name == "model.onnx":
                        continue
                    if f.is_dir():
                        shutil.copytree(f, tmp / f.name)
                    else:
                        shutil.copy2(f, tmp / f.name)
                qmod.quantize_dynamic(
                    str(fp32 / "model.onnx"), str(tmp / "model.onnx"), weight_type=qmod.QuantType.QInt8
                )
                _publish_dir(tmp, target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    return target


def _max_seq_length(folder: Path, default: int = 256) -> int:
    cfg = folder / "sentence_bert_config.json"
    if cfg.is_file():
        try:
            return int(json.loads(cfg.read_text())["max_seq_length"])
        except (KeyError, ValueError, TypeError):
            return default
    return default


def _pooling_mode(folder: Path) -> str:
    cfg = folder / "1_Pooling" / "config.json"
    if not cfg.is_file():
        return "mean"
    conf = json.loads(cfg.read_text())
    if conf.get("pooling_mode_cls_token"):
        return "cls"
    if conf.get("pooling_mode_mean_tokens", True):
        return "mean"
    raise ResourceError(f"{cfg} asks for a pooling mode the ONNX embedder does not implement; use backend 'torch'")


class OnnxEmbedder(BaseEmbedder):
    """A sentence-transformers model exported to ONNX (default: the shipped all-MiniLM-L6-v2), offline.

    ``model`` is a transformers model folder (exported once, see :func:`export_onnx`) or a folder
    already holding ``model.onnx`` and ``tokenizer.json``. ``runtime`` runs the graph with ONNX
    Runtime (``"onnxruntime"``) or OpenVINO (``"openvino"``, which reads the same ONNX file).
    ``precision`` (OpenVINO only): ``"auto"`` computes in bfloat16 where the CPU has native bf16
    (AMX, AVX512-BF16) and in float32 elsewhere; ``"f32"`` and ``"bf16"`` force one.
    ``quantize=True`` runs the int8 export (ONNX Runtime). ``threads`` defaults to
    :func:`default_threads`. ``encode_batch_size`` texts of similar token count go through the
    model together.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        runtime: Literal["onnxruntime", "openvino"] = "onnxruntime",
        precision: Literal["auto", "f32", "bf16"] = "auto",
        quantize: bool = False,
        threads: int | None = None,
        batch_size: int = 256,
        encode_batch_size: int = 32,
        cache: EmbeddingCache | str | os.PathLike[str] | None = None,
        name: str | None = None,
    ) -> None:
        if encode_batch_size < 1:
            raise InvalidInputError(f"encode_batch_size must be at least 1, got {encode_batch_size}")
        if threads is not None and threads < 1:
            raise InvalidInputError(f"threads must be at least 1, got {threads}")
        if runtime not in ("onnxruntime", "openvino"):
            raise InvalidInputError(f"runtime must be 'onnxruntime' or 'openvino', not {runtime!r}")
        if precision not in ("auto", "f32", "bf16"):
            raise InvalidInputError(f"precision must be 'auto', 'f32' or 'bf16', not {precision!r}")
        if quantize and runtime != "onnxruntime":
            raise InvalidInputError("quantize=True is the int8 ONNX Runtime backend; use runtime='onnxruntime'")
        tok_mod = require("tokenizers", feature="OnnxEmbedder", extra="fast", package="tokenizers")
        src = Path(model) if model is not None else None
        folder = src if src is not None and (src / "model.onnx").is_file() else export_onnx(src, quantize=quantize)
        self.model_dir = folder
        self.runtime = runtime
        self.threads = threads or default_threads()
        self.encode_batch_size = encode_batch_size
        self.max_length = _max_seq_length(folder)
        self.pooling = _pooling_mode(folder)
        self._run_lock = threading.Lock()
        onnx_file = str(folder / "model.onnx")
        if runtime == "onnxruntime":
            ort = require("onnxruntime", feature="OnnxEmbedder", extra="fast", package="onnxruntime")
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            try:
                self._session: Any = ort.InferenceSession(onnx_file, opts, providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime raises its own exception types
                raise ResourceError(f"ONNX Runtime cannot load {onnx_file}: {exc}; delete {folder}") from exc
            self._inputs = {i.name for i in self._session.get_inputs()}
            self.precision = "int8" if quantize else "f32"
            last = self._session.get_outputs()[0].shape[-1]
        else:
            ov = require("openvino", feature="OnnxEmbedder(runtime='openvino')", extra="fast", package="openvino")
            core = ov.Core()
            if precision == "auto":
                caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
                precision = "bf16" if "BF16" in caps and native_bf16() else "f32"
            self.precision = precision
            try:
                compiled = core.compile_model(
                    onnx_file,
                    "CPU",
                    {
                        "INFERENCE_PRECISION_HINT": precision,
                        "PERFORMANCE_HINT": "LATENCY",
                        "INFERENCE_NUM_THREADS": self.threads,
                    },
                )
            except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
                raise ResourceError(f"OpenVINO cannot compile {onnx_file}: {exc}; delete {folder}") from exc
            self._session = compiled.create_infer_request()
            self._inputs = {p.get_any_name() for p in compiled.inputs}
            last = compiled.outputs[0].get_partial_shape()[-1]
            last = last.get_length() if last.is_static else None
        self._tok = tok_mod.Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tok.enable_truncation(max_length=self.max_length)
        self._tok.no_padding()
        pad = self._tok.token_to_id("[PAD]")
        self._pad_id = 0 if pad is None else int(pad)
        dim = int(last) if isinstance(last, int) else 384
        label = "all-MiniLM-L6-v2" if model is None else Path(model).name
        if name is None:
            tag = f"openvino-{self.precision}" if runtime == "openvino" else ("onnx-int8" if quantize else "onnx")
            name = f"{tag}:{label}"
        super().__init__(name, dim, batch_size=batch_size, cache=cache)

    def __repr__(self) -> str:
        return (
            f"OnnxEmbedder(name={self.name!r}, dim={self.dim}, runtime={self.runtime!r}, "
            f"precision={self.precision!r}, threads={self.threads})"
        )

    def _forward(self, feeds: dict[str, npt.NDArray[np.int64]]) -> FloatArray:
        feeds = {k: v for k, v in feeds.items() if k in self._inputs}
        if self.runtime == "onnxruntime":
            hidden = self._session.run(None, feeds)[0]
        else:
            with self._run_lock:  # one OpenVINO infer request: one call at a time
                hidden = np.array(next(iter(self._session.infer(feeds).values())), dtype=np.float32)
        out: FloatArray = np.asarray(hidden, dtype=np.float32)
        return out

    def _run(self, encs: list[Any]) -> FloatArray:
        n = len(encs)
        width = max(len(e.ids) for e in encs)
        ids = np.full((n, width), self._pad_id, dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        types = np.zeros((n, width), dtype=np.int64)
        for r, e in enumerate(encs):
            m = len(e.ids)
            ids[r, :m] = e.ids
            mask[r, :m] = 1
            types[r, :m] = e.type_ids
        hidden = self._forward({"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
        if self.pooling == "cls":
            pooled: FloatArray = hidden[:, 0]
            return pooled
        w = mask[:, :, None].astype(np.float32)
        summed = (hidden * w).sum(axis=1)
        counts = np.clip(w.sum(axis=1), 1e-9, None)
        out: FloatArray = (summed / counts).astype(np.float32)
        return out

    def _embed_batch(self, texts: list[str]) -> FloatArray:
        encs = self._tok.encode_batch(texts, add_special_tokens=True)
        order = sorted(range(len(texts)), key=lambda i: len(encs[i].ids))
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        for s in range(0, len(order), self.encode_batch_size):
            part = order[s : s + self.encode_batch_size]
            out[part] = self._run([encs[i] for i in part])
        return out


def distill_static(
    model: str | os.PathLike[str] | None = None, *, pca_dims: int = 256, cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Folder of a ``model2vec`` static model distilled offline from ``model`` (default: the shipped MiniLM), made once.

    Cached under ``<cache>/model2vec/<name>-<hash>-pca<dims>/``. Distilling runs the transformer
    over the whole vocabulary once (minutes on 2 cores).
    """
    src = Path(model) if model is not None else default_model_path()
    base = Path(cache_dir) if cache_dir is not None else user_cache_dir() / "model2vec"
    stem = "all-MiniLM-L6-v2" if model is None else src.name
    target = base / f"{stem}-{model_hash(src)}-pca{pca_dims}"
    with _lock:
        if (target / "config.json").is_file():
            return target
        distill_mod = require("model2vec.distill", feature="StaticEmbedder", extra="fast", package="model2vec[distill]")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=base, prefix=f".{target.name}.tmp-"))
        try:
            static = distill_mod.distill(model_name=str(src), pca_dims=pca_dims)
            with warnings.catch_warnings():
                # model2vec's save_pretrained leaves its config file to the garbage collector
                warnings.simplefilter("ignore", ResourceWarning)
                static.save_pretrained(str(tmp))
                gc.collect()
            _publish_dir(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _is_static_model(folder: Path) -> bool:
    try:
        return bool(json.loads((folder / "config.json").read_text()).get("model_type") == "model2vec")
    except (OSError, ValueError, AttributeError):
        return False


class StaticEmbedder(BaseEmbedder):
    """A ``model2vec`` static embedding model (default: distilled offline from the shipped MiniLM).

    Not the same vector space as the transformer it came from: query an index built with it with it.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        pca_dims: int = 256,
        batch_size: int = 4096,
        cache: EmbeddingCache | str | os.PathLike[str] | None = None,
        name: str | None = None,
    ) -> None:
        m2v = require("model2vec", feature="StaticEmbedder", extra="fast", package="model2vec")
        src = Path(model) if model is not None else None
        folder = src if src is not None and _is_static_model(src) else distill_static(src, pca_dims=pca_dims)
        self.model_dir = folder
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)  # model2vec leaves its config file open
            self._model = m2v.StaticModel.from_pretrained(str(folder))
            gc.collect()
        dim = int(self._model.dim)
        label = "all-MiniLM-L6-v2" if model is None else Path(model).name
        super().__init__(name or f"static:{label}-{dim}", dim, batch_size=batch_size, cache=cache)

    def _embed_batch(self, texts: list[str]) -> FloatArray:
        vecs = self._model.encode(texts, show_progress_bar=False)
        out: FloatArray = np.asarray(vecs, dtype=np.float32)
        return out


def default_fast_backend() -> Backend:
    """``"openvino"`` where OpenVINO is installed and the CPU computes bfloat16 natively, else ``"onnx"``.

    Both agree with the torch vectors to cosine >= 0.9999 on real text (see docs/retrieval-scale.md).
    """
    import importlib.util

    if importlib.util.find_spec("openvino") is None:
        return "onnx"
    return "openvino" if native_bf16() else "onnx"


def make_embedder(
    backend: str = "fast",
    *,
    model: str | os.PathLike[str] | None = None,
    cache: EmbeddingCache | str | os.PathLike[str] | None = None,
    **options: Any,
) -> Embedder:
    """An embedder by backend name (see :data:`BACKENDS`); ``"fast"`` is :func:`default_fast_backend`.

    ``"torch"`` is sentence-transformers; ``"onnx"``/``"onnx-int8"`` ONNX Runtime (float32 / int8
    weights); ``"openvino"`` OpenVINO on the same ONNX file (bf16 where native, else f32),
    ``"openvino-f32"`` forces float32; ``"static"`` a model2vec model distilled from ``model``.
    """
    if backend == "fast":
        backend = default_fast_backend()
    if backend == "torch":
        return SentenceTransformerEmbedder(model, cache=cache, **options)
    if backend == "onnx":
        return OnnxEmbedder(model, cache=cache, **options)
    if backend == "onnx-int8":
        return OnnxEmbedder(model, quantize=True, cache=cache, **options)
    if backend == "openvino":
        return OnnxEmbedder(model, runtime="openvino", cache=cache, **options)
    if backend == "openvino-f32":
        return OnnxEmbedder(model, runtime="openvino", precision="f32", cache=cache, **options)
    if backend == "static":
        return StaticEmbedder(model, cache=cache, **options)
    raise InvalidInputError(f"unknown embedding backend {backend!r}; choose one of {list(BACKENDS)}")
