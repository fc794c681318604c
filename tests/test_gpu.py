"""The GPU path: a store extracted on CUDA equals the CPU store within a stated tolerance, and a model fitted on CPU
predicts the same MR test labels on CUDA. Runs wherever CUDA is available; skipped (the only skip) where it is not.

Tolerance, per stored array, as the relative Frobenius error ||gpu - cpu|| / ||cpu||: 1e-3 in float32 (cuBLAS
sums in another order; TF32 stays off, PyTorch's default for matmul), 1e-2 in float16 and 3e-2 in bfloat16
(8 significant bits: about 0.4 % per rounding, compounded over six blocks).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")]

TOLERANCE = {"float32": 1e-3, "float16": 1e-2, "bfloat16": 3e-2}


@pytest.fixture(scope="module")
def mr():
    from stc.data import load_dataset

    return load_dataset("mr")


@pytest.mark.parametrize("dtype", sorted(TOLERANCE))
def test_a_cuda_store_equals_the_cpu_store_within_tolerance(mr, dtype, tmp_path):
    from stc.backbone import load_backbone
    from stc.extract import default_poolings
    from stc.store import ExtractionSettings, build_store

    texts = mr.train.texts[:1000]
    stores = {}
    for device, device_dtype in (("cpu", "float32"), ("cuda", dtype)):
        backbone = load_backbone("minilm", device=device, dtype=device_dtype)
        settings = ExtractionSettings(representations=("hidden", "ffn"), poolings=default_poolings(backbone))
        stores[device] = build_store(backbone, texts, settings, root=tmp_path / device, show_progress_bar=False)
    assert stores["cpu"].keys == stores["cuda"].keys
    errors = {}
    for key in stores["cpu"].keys:
        cpu, gpu = stores["cpu"].load(key), stores["cuda"].load(key)
        errors[key] = float(np.linalg.norm(gpu - cpu) / np.linalg.norm(cpu))
    worst = max(errors, key=errors.get)
    print(f"{dtype}: worst relative error {errors[worst]:.2e} in {worst}")
    assert errors[worst] <= TOLERANCE[dtype], (worst, errors[worst])


def test_a_model_fitted_on_cpu_predicts_the_same_mr_labels_on_cuda(mr, tmp_path):
    from stc import STCClassifier

    clf = STCClassifier("minilm", device="cpu", dtype="float32", store_dir=str(tmp_path), show_progress_bar=False)
    clf.fit(mr.train.texts, mr.train.labels, X_val=mr.validation.texts, y_val=mr.validation.labels)
    on_cpu = clf.predict(mr.test.texts)
    for dtype in ("float32", "bfloat16"):
        clf.set_params(device="cuda", dtype=dtype)
        agreement = float(np.mean(clf.predict(mr.test.texts) == on_cpu))
        print(f"cuda {dtype}: {agreement:.4f} of {len(on_cpu)} MR test predictions agree with the CPU's")
        assert agreement >= 0.995, (dtype, agreement)
