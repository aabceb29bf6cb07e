"""UHCS spheroidite particles (example data): annotation PSDs and the KS comparison of DeCost et al. (2019).

The "predicted" masks are an honest, simple segmentation computed here (Gaussian blur,
Otsu threshold over the annotated field, hole filling, a 1-px opening), standing in for the
paper's CNN. Naive PSDs (connected components, no split, edge particles kept, no minimum
size) against metallo's (watershed split, edge / ignore exclusion, minimum area 15 px on
both sides) are KS-tested against the annotation PSD of the same image.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage

from metallo.quantify import ks_consistency, particle_sizes

DATASET = "uhcs_spheroidite_particle_segmentation"
MIN_AREA_PX = 15.0


def otsu_particles(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    from skimage.filters import gaussian, threshold_otsu

    smooth = gaussian(image.astype(np.float64) / 255.0, 1.0)
    mask = smooth > threshold_otsu(smooth[valid])
    mask = ndimage.binary_fill_holes(mask)
    mask = ndimage.binary_opening(mask, structure=ndimage.generate_binary_structure(2, 1))
    return np.where(valid, mask.astype(np.uint8), 255).astype(np.uint8)


@pytest.fixture(scope="module")
def uhcs(shared_file):
    root = shared_file(DATASET)
    meta = pd.read_csv(root / "metadata.csv").set_index("micrograph_id")
    items = []
    for mid, row in meta.iterrows():
        image = np.asarray(Image.open(root / "images" / f"micrograph{mid}.png"))
        labels = np.asarray(Image.open(root / "labels" / f"micrograph{mid}.png"))
        image = image[..., 0] if image.ndim == 3 else image
        items.append((str(mid), float(row["um_per_px"]), image, labels))
    return items


def test_annotation_psds(uhcs):
    for name, ps, _, labels in uhcs:
        table = particle_sizes(labels, pixel_size_um=ps)
        assert len(table) > 100, name
        # Spheroidite in these anneals: median ECD a few tenths of a micron.
        assert 0.1 < table["ecd_um"].median() < 0.7, name
        assert not table["touches_edge"].any()


def test_every_particle_is_one_connected_piece(uhcs):
    # The watershed flooded 4-connected inside 8-connected components: pixels joined to a
    # marker only diagonally were left over, and all of them became one "particle" scattered
    # over the image (micrograph1265: 49 pixels with a 53 µm Feret diameter; micrograph272 too).
    from metallo.quantify import split_touching

    for name, ps, _, labels in uhcs:
        ids = split_touching(labels == 1)
        assert ((ids > 0) == (labels == 1)).all(), name
        for i, box in enumerate(ndimage.find_objects(ids), 1):
            if box is not None:
                assert ndimage.label(ids[box] == i, structure=np.ones((3, 3)))[1] == 1, (name, i)
        table = particle_sizes(labels, pixel_size_um=ps)
        # A connected particle of n pixels spans at most n pixel diagonals.
        assert (table["feret_max_um"] <= table["area_px"] * np.sqrt(2) * ps + 1e-9).all(), name


@pytest.mark.slow
def test_ks_consistency_naive_vs_metallo(uhcs):
    naive, ours = {}, {}
    for name, ps, image, labels in uhcs:
        predicted = otsu_particles(image, labels != 255)
        reference = particle_sizes(labels, pixel_size_um=ps)
        naive[name] = (
            reference,
            particle_sizes(predicted, pixel_size_um=ps, split_touching=False, exclude_edge=False, ignore_index=None),
        )
        min_area = MIN_AREA_PX * ps**2
        ours[name] = (
            particle_sizes(labels, pixel_size_um=ps, min_area_um2=min_area),
            particle_sizes(predicted, pixel_size_um=ps, min_area_um2=min_area),
        )
    naive_table = ks_consistency(naive)
    ours_table = ks_consistency(ours)
    n = len(uhcs)
    print(f"KS-consistent images: naive {naive_table['consistent'].sum()}/{n}, "
          f"metallo {ours_table['consistent'].sum()}/{n}")
    assert naive_table["consistent"].sum() <= 2
    assert ours_table["consistent"].sum() > n / 2
    assert ours_table["statistic"].median() < naive_table["statistic"].median()
