"""llama.cpp through its own library (llama-cpp-python's ctypes bindings): the quantizer, and rank-pooled scoring
exactly as ``llama-server --reranking`` does it (the GGUF's ``rerank`` template filled by string replacement,
tokenized with special tokens parsed, the first of the head's softmaxed rows).

``Llama.create_embedding`` is not used: it tokenizes without parsing special tokens, so ``<|im_start|>`` becomes
text and scores are off by up to 0.35 (measured on the tiny fixtures)."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import SeqclsError

INSTALL_HINT = "install llama-cpp-python (scripts/setup llamacpp, or pip install 'seqcls[llamacpp]')"
KEEP_F32 = ("cls\\.output\\.weight",)
"""Tensors the quantizer must leave in float32 (patterns, as llama-quantize's --tensor-type takes them)."""
_initialised = False


def default_threads() -> int:
    """``SEQCLS_LLAMA_THREADS``, else every core. ggml's threads spin while they wait for each other, so on a machine
    whose cores are busy with other work (a test suite's other worker, say) fewer threads are faster."""
    return int(os.environ.get("SEQCLS_LLAMA_THREADS") or os.cpu_count() or 1)


def library():
    """``llama_cpp.llama_cpp``, its backend initialised once and its log quiet (it writes to stderr per call)."""
    global _initialised
    try:
        import llama_cpp.llama_cpp as lib
    except ImportError:
        raise SeqclsError(f"this needs llama.cpp: {INSTALL_HINT}") from None
    if not _initialised:
        lib.llama_log_set(_QUIET, ctypes.c_void_p(0))
        lib.llama_backend_init()
        _initialised = True
    return lib


@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def _QUIET(level, text, user_data):
    if level >= 4 and os.environ.get("SEQCLS_LLAMA_LOG"):  # GGML_LOG_LEVEL_ERROR
        print(text.decode(errors="replace"), end="")


def version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        return None


def quantize(src: Path, dst: Path, ftype: int, threads: int | None = None) -> None:
    """llama.cpp's own quantizer (``llama_model_quantize``), with ``KEEP_F32`` pinned to float32."""
    lib = library()
    params = lib.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads or default_threads()
    overrides = (lib.llama_model_tensor_override * (len(KEEP_F32) + 1))()
    for slot, pattern in zip(overrides, KEEP_F32):
        slot.pattern, slot.type = pattern.encode(), lib.GGML_TYPE_F32
    params.tt_overrides = ctypes.cast(overrides, ctypes.POINTER(lib.llama_model_tensor_override))
    if lib.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params)) != 0:
        raise SeqclsError(f"llama.cpp could not quantize {src.name}; run with SEQCLS_LLAMA_LOG=1 to see why")


class GgufFile:
    """A GGUF file's header as ggml's own parser reads it (``gguf_init_from_file``, no tensor data loaded): fast
    where the ``gguf`` package's reader decodes every one of a vocabulary's 450,000 strings in Python."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        lib = self._lib = _ggml()
        self._ctx = lib.gguf_init_from_file(str(path).encode(), _GgufInitParams(True, None))
        if not self._ctx:
            raise SeqclsError(f"{path} is not a GGUF file, or it is damaged")
        self.data_offset = lib.gguf_get_data_offset(self._ctx)
        self.tensors: dict[str, tuple[int, int, int]] = {}
        """name -> (ggml type, offset in the file, bytes)."""
        for i in range(lib.gguf_get_n_tensors(self._ctx)):
            name = lib.gguf_get_tensor_name(self._ctx, i).decode()
            offset = self.data_offset + lib.gguf_get_tensor_offset(self._ctx, i)
            kind, size = lib.gguf_get_tensor_type(self._ctx, i), lib.gguf_get_tensor_size(self._ctx, i)
            self.tensors[name] = (kind, offset, size)

    def string(self, key: str) -> str | None:
        i = self._lib.gguf_find_key(self._ctx, key.encode())
        if i < 0 or self._lib.gguf_get_kv_type(self._ctx, i) != _GGUF_TYPE_STRING:
            return None
        return self._lib.gguf_get_val_str(self._ctx, i).decode("utf-8")

    def u32(self, key: str) -> int | None:
        i = self._lib.gguf_find_key(self._ctx, key.encode())
        if i < 0 or self._lib.gguf_get_kv_type(self._ctx, i) != _GGUF_TYPE_UINT32:
            return None
        return self._lib.gguf_get_val_u32(self._ctx, i)

    def truncated(self) -> bool:
        end = max((offset + size for _, offset, size in self.tensors.values()), default=self.data_offset)
        return self.path.stat().st_size < end

    def read(self, name: str) -> bytes:
        _, offset, size = self.tensors[name]
        with open(self.path, "rb") as f:
            return os.pread(f.fileno(), size, offset)

    def close(self) -> None:
        if self._ctx:
            self._lib.gguf_free(self._ctx)
            self._ctx = None

    def __enter__(self) -> GgufFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _GgufInitParams(ctypes.Structure):
    _fields_ = [("no_alloc", ctypes.c_bool), ("ctx", ctypes.c_void_p)]


_GGUF_TYPE_UINT32, _GGUF_TYPE_STRING = 4, 8
_ggml_lib = None


def _ggml():
    """ggml's base library as llama-cpp-python ships it, with the few gguf_* calls used here declared."""
    global _ggml_lib
    if _ggml_lib is None:
        library()
        import llama_cpp

        lib = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
        p, i64, sz = ctypes.c_void_p, ctypes.c_int64, ctypes.c_size_t
        for name, res, args in (
            ("gguf_init_from_file", p, [ctypes.c_char_p, _GgufInitParams]),
            ("gguf_free", None, [p]),
            ("gguf_get_data_offset", sz, [p]),
            ("gguf_get_n_tensors", i64, [p]),
            ("gguf_get_tensor_name", ctypes.c_char_p, [p, i64]),
            ("gguf_get_tensor_offset", sz, [p, i64]),
            ("gguf_get_tensor_type", ctypes.c_int, [p, i64]),
            ("gguf_get_tensor_size", sz, [p, i64]),
            ("gguf_find_key", i64, [p, ctypes.c_char_p]),
            ("gguf_get_kv_type", ctypes.c_int, [p, i64]),
            ("gguf_get_val_str", ctypes.c_char_p, [p, i64]),
            ("gguf_get_val_u32", ctypes.c_uint32, [p, i64]),
        ):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        _ggml_lib = lib
    return _ggml_lib


class RankModel:
    """A GGUF loaded for rank pooling. ``n_ctx`` bounds the tokens of one batch of prompts (and so the longest
    prompt); prompts are packed into batches of at most that many tokens, one sequence each."""

    def __init__(self, path: Path, n_ctx: int, threads: int | None = None, max_sequences: int = 64) -> None:
        lib = self.lib = library()
        params = lib.llama_model_default_params()
        params.n_gpu_layers = 0
        self.model = lib.llama_model_load_from_file(str(path).encode(), params)
        if not self.model:
            raise SeqclsError(f"llama.cpp cannot load {path}; it is not a GGUF model or it is truncated")
        self.n_ctx, self.max_sequences = n_ctx, max_sequences
        ctx_params = lib.llama_context_default_params()
        ctx_params.n_ctx = ctx_params.n_batch = ctx_params.n_ubatch = n_ctx
        ctx_params.n_seq_max = max_sequences
        ctx_params.embeddings = True
        ctx_params.pooling_type = lib.LLAMA_POOLING_TYPE_RANK
        ctx_params.kv_unified = True
        ctx_params.n_threads = ctx_params.n_threads_batch = threads or default_threads()
        self.ctx = lib.llama_init_from_model(self.model, ctx_params)
        if not self.ctx:
            lib.llama_model_free(self.model)
            raise SeqclsError(f"llama.cpp cannot make a context of {n_ctx} tokens for {path.name}")
        self.vocab = lib.llama_model_get_vocab(self.model)
        self.outputs = lib.llama_model_n_cls_out(self.model)

    def metadata(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(1 << 16)
        n = self.lib.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8") if n >= 0 else None

    def rerank_template(self) -> str | None:
        raw = self.lib.llama_model_chat_template(self.model, b"rerank")
        return raw.decode("utf-8") if raw else None

    def tokenize(self, text: str) -> list[int]:
        """As llama-server tokenizes a rerank prompt: no BOS/EOS added, special tokens parsed."""
        data = text.encode("utf-8")
        size = len(data) + 16
        while True:
            out = (self.lib.llama_token * size)()
            n = self.lib.llama_tokenize(self.vocab, data, len(data), out, size, False, True)
            if n >= 0:
                return list(out[:n])
            size = -n

    def scores(self, prompts: Iterable[list[int]]) -> Iterator[list[float]]:
        """Each prompt's rank outputs (the head's softmaxed rows), in order."""
        batch: list[list[int]] = []
        for ids in prompts:
            if len(ids) > self.n_ctx:
                raise SeqclsError(f"a prompt of {len(ids)} tokens is longer than llama.cpp's context ({self.n_ctx})")
            if batch and (sum(map(len, batch)) + len(ids) > self.n_ctx or len(batch) == self.max_sequences):
                yield from self._decode(batch)
                batch = []
            batch.append(ids)
        if batch:
            yield from self._decode(batch)

    def _decode(self, prompts: list[list[int]]) -> list[list[float]]:
        lib = self.lib
        total = sum(map(len, prompts))
        batch = lib.llama_batch_init(total, 0, 1)
        try:
            k = 0
            for seq, ids in enumerate(prompts):
                for pos, token in enumerate(ids):
                    batch.token[k], batch.pos[k], batch.n_seq_id[k] = token, pos, 1
                    batch.seq_id[k][0], batch.logits[k] = seq, pos == len(ids) - 1
                    k += 1
            batch.n_tokens = total
            lib.llama_memory_clear(lib.llama_get_memory(self.ctx), True)
            if lib.llama_decode(self.ctx, batch) != 0:
                raise SeqclsError("llama.cpp failed to score a batch; run with SEQCLS_LLAMA_LOG=1 to see why")
            out = []
            for seq in range(len(prompts)):
                values = lib.llama_get_embeddings_seq(self.ctx, seq)
                out.append([float(values[i]) for i in range(self.outputs)])
            return out
        finally:
            lib.llama_batch_free(batch)

    def close(self) -> None:
        if self.ctx:
            self.lib.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            self.lib.llama_model_free(self.model)
            self.model = None

    def __enter__(self) -> RankModel:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
