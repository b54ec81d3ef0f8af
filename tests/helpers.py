"""Small helpers shared by test modules (pytest puts this folder on sys.path)."""
import numpy as np
from PIL import Image


def picture(seed: int, size=(48, 48)) -> Image.Image:
    """A small image of coloured blocks, different for every seed."""
    rng = np.random.RandomState(seed)
    blocks = rng.randint(0, 256, (6, 6, 3)).astype(np.uint8)
    return Image.fromarray(blocks).resize(size, Image.NEAREST)
