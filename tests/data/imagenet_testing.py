"""A tiny ILSVRC12-layout directory of real JPEGs, for the ImageNet pipeline's tests."""

import os

import numpy as np

#: Deliberately not in alphabetical order of creation, so tests see labels follow the sorted synsets.
WNIDS = ("n09999999", "n01440764", "n02102040", "n03000134", "n04000000")


def class_colour(label):
    """The dominant RGB colour of class ``label``'s images (distinct per class)."""
    palette = [(220, 30, 30), (30, 200, 40), (30, 40, 220), (200, 200, 30), (200, 30, 200)]
    return np.array(palette[label % len(palette)], np.uint8)


def write_tiny_ilsvrc12(root, num_classes=3, images_per_class=4, size=(40, 48), val_layout="folders",
                        synsets_file=False, seed=0):
    """Writes ``root/train/<wnid>/*.JPEG`` and ``root/val`` (class folders, or ``"flat"`` images
    with ``root/val.txt``), ``images_per_class`` noisy JPEGs of a per-class colour, ``size=(H, W)``.

    Returns ``sorted wnids``: label ``k`` is ``sorted(wnids)[k]`` (the synset order).
    """
    from PIL import Image

    root = str(root)
    rng = np.random.default_rng(seed)
    wnids = list(WNIDS[:num_classes])
    synsets = sorted(wnids)
    val_lines = []
    for wnid in wnids:
        label = synsets.index(wnid)
        for split in ("train", "val"):
            for i in range(images_per_class):
                noise = rng.integers(-25, 26, size=size + (3,))
                pixels = np.clip(class_colour(label).astype(int) + noise, 0, 255).astype(np.uint8)
                name = f"{wnid}_{split}_{i}.JPEG"
                if split == "val" and val_layout == "flat":
                    folder = os.path.join(root, "val")
                    val_lines.append(f"{name} {label}")
                else:
                    folder = os.path.join(root, split, wnid)
                os.makedirs(folder, exist_ok=True)
                Image.fromarray(pixels).save(os.path.join(folder, name), quality=95)
    if val_lines:
        with open(os.path.join(root, "val.txt"), "w") as f:
            f.write("\n".join(val_lines) + "\n")
    if synsets_file:
        with open(os.path.join(root, "synsets.txt"), "w") as f:
            f.write("\n".join(synsets) + "\n")
    return synsets
