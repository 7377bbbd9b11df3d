"""Load failures in words, from the file and from llama.cpp's own log lines (as logged by 0.3.36)."""
from core.engine.load_failure import check_file, explain
from core.engine.protocol import FailureKind

KV_TOO_BIG = (
    "llama_context: n_ctx_seq (16777216) > n_ctx_train (8192) -- possible training context overflow",
    "ggml_aligned_malloc: insufficient memory (attempted to allocate 368640.00 MB)",
    "ggml_backend_cpu_buffer_type_alloc_buffer: failed to allocate buffer of size 386547056640",
    "alloc_tensor_range: failed to allocate CPU buffer of size 386547056640",
    "llama_init_from_model: failed to initialize the context: failed to allocate buffer for kv cache",
)
TRUNCATED = (
    "llama_model_load: error loading model: tensor 'token_embd.weight' data is not within the file "
    "bounds, model is corrupted or incomplete",
    "llama_model_load_from_file_impl: failed to load model",
)


def test_a_missing_file(tmp_path):
    failure = check_file(str(tmp_path / "nope.gguf"))
    assert failure.kind is FailureKind.MISSING and "does not exist" in failure.reason


def test_a_file_that_is_not_gguf(tmp_path):
    path = tmp_path / "notes.gguf"
    path.write_text("hello")
    assert check_file(str(path)).kind is FailureKind.NOT_GGUF


def test_a_gguf_file_passes_the_python_checks(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF" + bytes(20))
    assert check_file(str(path)) is None


def test_an_allocation_failure_is_a_memory_problem_with_its_size():
    failure = explain("/m/SmolLM2.gguf", KV_TOO_BIG, "context")
    assert failure.kind is FailureKind.MEMORY
    assert failure.kind.may_step_down
    assert "failed to allocate buffer for kv cache" in failure.reason
    assert "360.0 GiB" in failure.reason


def test_a_truncated_file_is_corrupt():
    failure = explain("/m/SmolLM2.gguf", TRUNCATED, "model")
    assert failure.kind is FailureKind.CORRUPT and not failure.kind.may_step_down
    assert "not within the file bounds" in failure.reason


def test_an_unknown_architecture_is_unsupported():
    lines = ("llama_model_load: error loading model: error loading model architecture: "
             "unknown model architecture: 'qwen9'",)
    failure = explain("/m/x.gguf", lines, "model")
    assert failure.kind is FailureKind.UNSUPPORTED and "'qwen9'" in failure.reason
