"""Write the example folder dataset (config/examples/own_data.yaml): 8x8 greyscale PNGs in
torchvision's ImageFolder layout, one directory per class, no train/test split (lesion
draws a seeded, stratified one).

The images are scikit-learn's handwritten zeros, ones and sevens (values 0..16 scaled to
0..255), the first 80 of each, so the folder is small enough to ship and any machine
can write it again:  python config/examples/own_data/make_glyphs.py
"""

from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

CLASSES = {"one": 1, "seven": 7, "zero": 0}
PER_CLASS = 80


def main(out: Path = Path(__file__).parent / "glyphs") -> None:
    digits = load_digits()
    for name, digit in CLASSES.items():
        (out / name).mkdir(parents=True, exist_ok=True)
        images = digits.images[digits.target == digit][:PER_CLASS]
        for i, image in enumerate(images):
            pixels = np.clip(image * 16, 0, 255).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(out / name / f"{i:03d}.png", optimize=True)


if __name__ == "__main__":
    main()
