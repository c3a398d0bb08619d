"""OCR evidence for typographic images (FigStep/SafeBench, MM-SafetyBench TYPO, HADES, QR images),
with RapidOCR: PP-OCRv4 ONNX models shipped inside the ``rapidocr-onnxruntime`` wheel, so it runs
offline on the CPU. The recognised lines, in reading order, become the image's evidence text."""

from __future__ import annotations

import importlib.util
from typing import Any

from vsil.errors import MissingDependencyError


class OCRBackend:
    name = "ocr"

    @classmethod
    def from_config(cls, config: Any, **context: Any) -> OCRBackend:
        return cls()

    @classmethod
    def describe_config(cls, config: Any) -> str:
        return "ocr:rapidocr-onnxruntime"

    @classmethod
    def weights(cls, name: str = "") -> str:
        spec = importlib.util.find_spec("rapidocr_onnxruntime")
        if spec is None or not spec.submodule_search_locations:
            return "PP-OCRv4 models ship with rapidocr-onnxruntime (not installed)"
        import os

        folder = os.path.join(next(iter(spec.submodule_search_locations)), "models")
        found = sorted(f for f in os.listdir(folder) if f.endswith(".onnx")) if os.path.isdir(folder) else []
        return f"{len(found)} PP-OCRv4 ONNX models in {folder}" if found else f"no models found in {folder}"

    def __init__(self, min_confidence: float = 0.5) -> None:
        if importlib.util.find_spec("rapidocr_onnxruntime") is None:
            raise MissingDependencyError("rapidocr-onnxruntime", "ocr")
        from rapidocr_onnxruntime import RapidOCR

        self.engine = RapidOCR()
        self.min_confidence = min_confidence
        self.cache_id = f"ocr:rapidocr-onnxruntime:v2:min_conf={min_confidence}"

    def read(self, image: Any) -> str:
        import numpy as np

        result, _ = self.engine(np.asarray(image))
        if not result:
            return ""
        return " ".join(
            reading_order(
                [(box, text) for box, text, conf in result if float(conf) >= self.min_confidence and text.strip()]
            )
        )

    def describe(self, images: list[Any]) -> list[str]:
        return [self.read(im) for im in images]


def reading_order(items: list[tuple[Any, str]]) -> list[str]:
    """Texts of OCR boxes in reading order: boxes whose vertical centres lie within half a box height
    form one line; lines top to bottom, boxes left to right."""
    boxes = []
    for box, text in items:
        ys = [float(p[1]) for p in box]
        xs = [float(p[0]) for p in box]
        boxes.append(((min(ys) + max(ys)) / 2, max(1.0, max(ys) - min(ys)), min(xs), text.strip()))
    boxes.sort()
    lines: list[list[tuple[float, float, float, str]]] = []
    for b in boxes:
        if lines and abs(b[0] - lines[-1][0][0]) < 0.5 * max(b[1], lines[-1][0][1]):
            lines[-1].append(b)
        else:
            lines.append([b])
    return [b[3] for line in lines for b in sorted(line, key=lambda b: b[2])]
