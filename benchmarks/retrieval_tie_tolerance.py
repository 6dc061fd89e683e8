"""The tie tolerance of retrieval_metrics: the rounding it guards against, and what it costs.

Synthetic features of the size of the COCO 5K test gallery (5,000 images x 5 captions, d = 512;
captions are their image plus noise, so that R@1 is far from 0 and 100): the largest difference
between two computations of the same scores (row blocks of different shapes, FAISS vs a numpy
matrix product), and rSum with the tolerance of before issue 25, the current one and none.

Run: ``python benchmarks/retrieval_tie_tolerance.py`` (about a minute and a half on 2 cores).
Result (2 cores, numpy/FAISS of the dev venv): largest rounding difference 1.27e-7 (row
blocks) and 1.19e-7 (FAISS vs matmul); rSum 398.82 with the old tolerance 6.1e-5, 399.10 with
``tie_tolerance(512)`` = 1.19e-6 and 399.10 with exact comparison (old cost -0.28, new 0.00).
"""

from __future__ import annotations

import numpy as np

from retrieval.indices import build_index
from retrieval.metrics import retrieval_metrics, tie_tolerance

OLD_TOLERANCE = 6.1e-5  # 2 gamma_{d+2} at d = 512, the rule before issue 25


def features(n_images: int = 5000, per_image: int = 5, d: int = 512, noise: float = 7.0,
             seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((n_images, d)).astype(np.float32)
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    ids = np.repeat(np.arange(n_images), per_image)
    texts = images[ids] + noise * rng.standard_normal((ids.size, d)).astype(np.float32) / d ** .5
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    return images, texts.astype(np.float32), ids


def rounding_differences(images: np.ndarray, texts: np.ndarray) -> dict[str, float]:
    rows = images[:512]
    full = rows @ texts.T
    blocked = np.concatenate([rows[a:a + 37] @ texts.T for a in range(0, rows.shape[0], 37)])
    index = build_index(texts)
    scores, order = index.search(rows, texts.shape[0])
    from_faiss = np.empty_like(full)
    np.put_along_axis(from_faiss, order, scores, axis=1)
    return {"blocks": float(np.abs(blocked - full).max()),
            "faiss_vs_matmul": float(np.abs(from_faiss - full).max())}


def main() -> None:
    images, texts, ids = features()
    d = images.shape[1]
    print(f"gallery: {images.shape[0]} images, {texts.shape[0]} captions, d = {d}")
    for name, value in rounding_differences(images, texts).items():
        print(f"largest rounding difference ({name}): {value:.2e}")
    for label, tol in (("before issue 25", OLD_TOLERANCE), ("tie_tolerance(512)", tie_tolerance(d)),
                       ("exact (0)", 0.0)):
        metrics = retrieval_metrics(images, texts, ids, tie_tol=tol)
        print(f"tol {tol:.2e} ({label}): rSum {metrics['rsum']:.2f}")


if __name__ == "__main__":
    main()
