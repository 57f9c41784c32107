"""Deterministic synthetic breast / lymph-node-like B-mode ultrasound data for MUNet demos and tests.

Nothing here comes from real patients. Each case is a 2D grayscale "B-mode" image with a single
hypoechoic (dark) lesion, a binary lesion mask and a benign (0) / malignant (1) label. The
features mimic the sonographic cues of the BI-RADS ultrasound lexicon:

* shape: benign lesions are oval; malignant ones are irregular;
* orientation: benign lesions are "wider than tall" (parallel to the skin); malignant ones are
  often "taller than wide" (not parallel);
* margin: benign lesions are circumscribed (smooth, sharp edge, sometimes a thin echogenic
  capsule); malignant ones are angular, microlobulated, indistinct or spiculated, sometimes with an
  echogenic halo;
* posterior features: benign (cyst-like) lesions may show posterior acoustic enhancement (brighter
  column below); malignant lesions tend to cast posterior acoustic shadowing (darker column below).

About 15 % of the cases of each class are drawn as "atypical" (benign lesions that are lobulated
and round, malignant ones that are round, circumscribed and without shadow) so that no single
feature separates the classes perfectly.

The image model is: smooth layered echogenicity map (skin line, subcutaneous fat, fibroglandular
tissue, Cooper's-ligament-like bright bands, pectoral muscle striations) x depth attenuation x lesion
and posterior effects x multiplicative Rayleigh speckle, then log compression and a slight blur.

Only numpy and scipy.ndimage are used.
Everything is driven by a ``numpy.random.Generator`` so the same seed gives byte-identical files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

__all__ = ["make_case", "ATYPICAL_FRACTION"]

#: Probability that a case is drawn as "atypical" (features overlapping with the other class).
ATYPICAL_FRACTION: float = 0.15


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float | tuple[float, float]) -> np.ndarray:
    """Zero-mean, unit-std Gaussian random field (white noise low-passed with ``sigma`` pixels).

    Imitates slowly varying tissue echogenicity (mottled parenchyma, heterogeneous lesion interior).
    """
    field = ndi.gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    std = float(field.std())
    return (field - field.mean()) / (std if std > 1e-12 else 1.0)


def _smooth_curve(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Zero-mean, unit-std smooth 1D random curve of length ``n`` (undulating tissue interfaces)."""
    curve = ndi.gaussian_filter1d(rng.standard_normal(n), sigma, mode="reflect")
    std = float(curve.std())
    return (curve - curve.mean()) / (std if std > 1e-12 else 1.0)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically safe logistic function used for soft tissue-layer transitions."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _rayleigh_speckle(rng: np.random.Generator, shape: tuple[int, int], sigma_axial: float, sigma_lateral: float) -> np.ndarray:
    """Fully developed speckle: envelope of a low-passed complex Gaussian field, mean 1.

    The envelope of circular complex Gaussian noise is Rayleigh distributed; the anisotropic
    low-pass mimics a B-mode point-spread function (speckle grains elongated laterally).
    """
    sig = (sigma_axial, sigma_lateral)
    re = ndi.gaussian_filter(rng.standard_normal(shape), sig, mode="reflect")
    im = ndi.gaussian_filter(rng.standard_normal(shape), sig, mode="reflect")
    env = np.hypot(re, im)
    return env / max(float(env.mean()), 1e-12)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Layered echogenicity map of breast-like soft tissue (before speckle), values ~0.05-1.5.

    Layers from top to bottom: bright skin line, hypoechoic subcutaneous fat, brighter mottled
    fibroglandular tissue, and (sometimes) a striated pectoral muscle; plus a few thin curvilinear
    echogenic bands (Cooper's ligaments / fascia) and depth-dependent attenuation.
    """
    h, w = height, width
    y = (np.arange(h, dtype=np.float64) / h)[:, None]

    def interface(depth: float, amp: float, smooth: float) -> np.ndarray:
        """Undulating depth (fraction of height) of a tissue interface, one value per column."""
        return depth + amp * _smooth_curve(rng, w, smooth * w)[None, :]

    fat_level = rng.uniform(0.2, 0.4)
    gland_level = rng.uniform(0.6, 1.0)
    muscle_level = rng.uniform(0.35, 0.6)
    soft = rng.uniform(0.01, 0.03)

    skin_d = rng.uniform(0.015, 0.04)
    fat_d = interface(rng.uniform(0.1, 0.25), rng.uniform(0.01, 0.04), rng.uniform(0.08, 0.2))
    has_muscle = rng.random() < 0.6
    muscle_d = interface(rng.uniform(0.72, 0.9), rng.uniform(0.01, 0.03), rng.uniform(0.1, 0.3))

    echo = fat_level + (gland_level - fat_level) * _sigmoid((y - fat_d) / soft)
    if has_muscle:
        echo = echo + (muscle_level - gland_level) * _sigmoid((y - muscle_d) / soft)
        # horizontal striations of the muscle fibres
        period = rng.uniform(0.015, 0.035)
        stria = 0.5 + 0.5 * np.sin(2 * np.pi * (y - muscle_d) / period)
        echo = echo * (1.0 + 0.35 * stria * _sigmoid((y - muscle_d) / soft))

    # skin line: bright, thin, right at the top
    echo = echo + rng.uniform(0.6, 1.2) * np.exp(-(((y - skin_d) / rng.uniform(0.006, 0.012)) ** 2))

    # Cooper's-ligament-like thin bright bands, undulating and laterally incomplete
    for _ in range(int(rng.integers(2, 6))):
        depth = interface(rng.uniform(0.08, 0.9), rng.uniform(0.01, 0.05), rng.uniform(0.05, 0.2))
        thickness = rng.uniform(0.004, 0.012)
        extent = _sigmoid(2.5 * _smooth_curve(rng, w, rng.uniform(0.05, 0.2) * w) + rng.uniform(-1.0, 1.5))
        echo = echo + rng.uniform(0.2, 0.6) * extent[None, :] * np.exp(-(((y - depth) / thickness) ** 2))

    # fat lobules: soft hypoechoic ovals, wider than tall (benign-looking distractors, not lesions)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    for _ in range(int(rng.integers(2, 8))):
        cy = rng.uniform(0.05, 0.95) * h
        cx = rng.uniform(0.0, 1.0) * w
        ry = rng.uniform(0.02, 0.07) * h
        rx = ry * rng.uniform(1.5, 3.0)
        blob = np.exp(-(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2) ** 2)
        echo = echo * (1.0 - rng.uniform(0.25, 0.5) * blob)

    # mottled parenchyma
    mottle = rng.uniform(0.08, 0.2) * _smooth_field(rng, (h, w), (rng.uniform(3, 8), rng.uniform(6, 16)))
    echo = echo * np.clip(1.0 + mottle, 0.3, None)

    # depth attenuation partially compensated by time-gain compensation, plus a lateral gain ripple
    alpha = rng.uniform(0.3, 1.1)
    echo = echo * np.exp(-alpha * y)
    echo = echo * (1.0 + 0.05 * _smooth_curve(rng, w, 0.2 * w)[None, :])
    return np.clip(echo, 0.03, None)


@dataclass
class _LesionParams:
    """Random parameters of one lesion (internal)."""

    malignant: bool
    atypical: bool
    mean_radius: float  # pixels, geometric mean of the semi-axes
    aspect_wh: float  # width / height of the base ellipse
    tilt: float  # radians
    harmonics: list[tuple[int, float, float]]  # (order, relative amplitude, phase)
    spikes: list[tuple[float, float, float]]  # (angle, relative amplitude, half-width in radians)
    contrast: float  # echogenicity inside the lesion relative to the tissue (<1 = hypoechoic)
    heterogeneity: float  # std of the internal echo texture
    edge_sigma: float  # boundary blur in pixels (circumscribed vs indistinct)
    rim: float  # >0: echogenic capsule/halo strength
    rim_width: float  # pixels
    posterior: float  # >0 enhancement, <0 shadowing (relative change of the column below)


def _lesion_params(rng: np.random.Generator, short_side: int, malignant: bool) -> _LesionParams:
    """Draw BI-RADS-like lesion descriptors for one class, with ~15 % atypical (overlapping) cases."""
    atypical = bool(rng.random() < ATYPICAL_FRACTION)
    mean_radius = float(rng.uniform(0.08, 0.35) * short_side)
    harmonics: list[tuple[int, float, float]] = []
    spikes: list[tuple[float, float, float]] = []

    def add_harmonics(orders: range, total: float) -> None:
        """Radial harmonics of total amplitude ``total`` (lobulated / angular margin)."""
        weights = rng.uniform(0.3, 1.0, len(orders)) / np.sqrt(np.array(list(orders), dtype=float))
        weights = weights / weights.sum() * total
        for k, a in zip(orders, weights):
            harmonics.append((int(k), float(a), float(rng.uniform(0, 2 * np.pi))))

    if not malignant:
        if not atypical:
            # oval, parallel ("wider than tall"), circumscribed
            aspect = rng.uniform(1.3, 2.0)
            add_harmonics(range(2, 4), rng.uniform(0.0, 0.04))
            tilt = rng.uniform(-0.2, 0.2)
            edge_sigma = rng.uniform(0.5, 1.2)
            posterior = rng.uniform(0.0, 0.5) if rng.random() < 0.7 else rng.uniform(-0.05, 0.1)
            contrast = rng.uniform(0.04, 0.3)
            heterogeneity = rng.uniform(0.05, 0.25)
        else:
            # gently lobulated, roundish benign lesion (e.g. lobulated fibroadenoma)
            aspect = rng.uniform(0.8, 1.2)
            add_harmonics(range(2, 6), rng.uniform(0.06, 0.14))
            tilt = rng.uniform(-0.4, 0.4)
            edge_sigma = rng.uniform(0.8, 1.8)
            posterior = rng.uniform(-0.15, 0.15)
            contrast = rng.uniform(0.1, 0.35)
            heterogeneity = rng.uniform(0.1, 0.35)
        capsule = rng.random() < 0.4
        rim = rng.uniform(0.15, 0.4) if capsule else 0.0
        rim_width = rng.uniform(1.0, 2.0)
    else:
        if not atypical:
            # irregular / spiculated, not parallel ("taller than wide"), shadowing
            aspect = 1.0 / rng.uniform(1.1, 1.6)
            add_harmonics(range(3, 10), rng.uniform(0.1, 0.25))
            if rng.random() < 0.7:
                for _ in range(int(rng.integers(3, 12))):
                    spikes.append(
                        (float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.035, 0.08)))
                    )
            tilt = rng.uniform(-0.35, 0.35)
            # spiculated margins stay sharp enough for the spicules to be visible; others indistinct
            edge_sigma = rng.uniform(0.5, 1.0) if spikes else rng.uniform(0.8, 2.5)
            posterior = -rng.uniform(0.3, 0.7)
            contrast = rng.uniform(0.08, 0.35)
            heterogeneity = rng.uniform(0.3, 0.7)
            halo = rng.random() < 0.4
            rim = rng.uniform(0.2, 0.5) if halo else 0.0
            rim_width = rng.uniform(2.0, 5.0)
        else:
            # round, mildly irregular, weak or no shadow (e.g. high-grade / mucinous carcinoma)
            aspect = rng.uniform(0.85, 1.3)
            add_harmonics(range(3, 8), rng.uniform(0.03, 0.09))
            tilt = rng.uniform(-0.4, 0.4)
            edge_sigma = rng.uniform(0.6, 2.0)
            posterior = rng.uniform(-0.25, 0.15)
            contrast = rng.uniform(0.08, 0.35)
            heterogeneity = rng.uniform(0.15, 0.45)
            rim = rng.uniform(0.1, 0.3) if rng.random() < 0.2 else 0.0
            rim_width = rng.uniform(1.5, 3.0)

    if rng.random() < 0.2:  # subtle, only mildly hypoechoic lesion (harder to segment)
        contrast = rng.uniform(0.35, 0.6)

    return _LesionParams(
        malignant=malignant,
        atypical=atypical,
        mean_radius=mean_radius,
        aspect_wh=float(aspect),
        tilt=float(tilt),
        harmonics=harmonics,
        spikes=spikes,
        contrast=float(contrast),
        heterogeneity=float(heterogeneity),
        edge_sigma=float(edge_sigma),
        rim=float(rim),
        rim_width=float(rim_width),
        posterior=float(posterior),
    )


def _radius(theta: np.ndarray, p: _LesionParams, scale: float) -> np.ndarray:
    """Star-shaped lesion boundary r(theta): tilted ellipse x (1 + harmonics) x (1 + spikes)."""
    a = p.mean_radius * np.sqrt(p.aspect_wh) * scale  # lateral semi-axis
    b = p.mean_radius / np.sqrt(p.aspect_wh) * scale  # axial semi-axis
    t = theta - p.tilt
    r = a * b / np.sqrt((b * np.cos(t)) ** 2 + (a * np.sin(t)) ** 2)
    mod = np.ones_like(theta)
    for k, amp, phase in p.harmonics:
        mod = mod + amp * np.cos(k * theta + phase)
    for ang, amp, half_width in p.spikes:
        d = np.abs(np.angle(np.exp(1j * (theta - ang))))  # wrapped angular distance
        mod = mod + amp * np.clip(1.0 - d / half_width, 0.0, None)  # thin triangular spicule
    return r * np.clip(mod, 0.3, None)


def _place_lesion(rng: np.random.Generator, p: _LesionParams, height: int, width: int) -> np.ndarray:
    """Rasterise the lesion at a random position below the skin/fat layers; returns a bool mask."""
    theta = np.linspace(0.0, 2 * np.pi, 1440, endpoint=False)
    top_lim, bottom_lim = 0.1 * height, 0.9 * height
    margin_x = 0.04 * width
    scale = 1.0
    for _ in range(50):
        r = _radius(theta, p, scale)
        ext_l, ext_r = float(np.max(-r * np.cos(theta))), float(np.max(r * np.cos(theta)))
        ext_t, ext_b = float(np.max(-r * np.sin(theta))), float(np.max(r * np.sin(theta)))
        if ext_l + ext_r <= width - 2 * margin_x - 2 and ext_t + ext_b <= bottom_lim - top_lim - 2:
            break
        scale *= 0.9
    cx = rng.uniform(margin_x + ext_l, width - margin_x - ext_r)
    # prefer the upper-middle part so that there is room for posterior features
    cy_lo, cy_hi = top_lim + ext_t, bottom_lim - ext_b
    cy = cy_lo + (cy_hi - cy_lo) * rng.beta(2.0, 2.5)

    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    dy, dx = yy - cy, xx - cx
    ang = np.arctan2(dy, dx)
    mask = np.hypot(dx, dy) <= _radius(ang, p, scale)
    if not mask.any():  # degenerate tiny lesion: at least the centre pixel
        mask[int(round(cy)), int(round(cx))] = True
    # keep the main connected component (thin spicule tips may rasterise into islands)
    lab, n = ndi.label(mask)
    if n > 1:
        sizes = ndi.sum(mask, lab, index=np.arange(1, n + 1))
        mask = lab == (1 + int(np.argmax(sizes)))
    return mask


def _posterior_column(mask: np.ndarray, lesion_width: float) -> np.ndarray:
    """Soft map (0..1) of the acoustic column below the lesion, for enhancement or shadowing."""
    below = (np.cumsum(mask, axis=0) > 0) & ~mask
    col = ndi.gaussian_filter(below.astype(np.float64), (2.0, max(1.0, 0.06 * lesion_width)))
    # fade slowly with depth below the lesion bottom
    h = mask.shape[0]
    rows = np.nonzero(mask.any(axis=1))[0]
    bottom = rows.max() if rows.size else 0
    depth = np.clip((np.arange(h) - bottom) / max(h - bottom, 1), 0.0, 1.0)[:, None]
    return col * (1.0 - 0.4 * depth)


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------
def make_case(rng: np.random.Generator, height: int, width: int, malignant: bool) -> tuple[np.ndarray, np.ndarray]:
    """Generate one synthetic B-mode ultrasound case.

    Args:
        rng: random generator (the only source of randomness, so results are reproducible).
        height: image height in pixels (>= 32).
        width: image width in pixels (>= 32).
        malignant: draw a malignant-looking lesion (irregular/spiculated margin, "taller than
            wide" orientation, posterior acoustic shadowing) instead of a benign-looking one (oval,
            circumscribed, "wider than tall", sometimes posterior enhancement). About 15 % of cases
            of each class are atypical and borrow features of the other class.

    Returns:
        ``(image, mask)``: ``image`` is (H, W) uint8 grayscale; ``mask`` is (H, W) uint8 in {0, 1},
        exactly the lesion region (non-empty, never the whole image).
    """
    height, width = int(height), int(width)
    if height < 32 or width < 32:
        raise ValueError(f"image must be at least 32x32, got {height}x{width}")
    short_side = min(height, width)

    echo = _background(rng, height, width)
    p = _lesion_params(rng, short_side, bool(malignant))
    mask = _place_lesion(rng, p, height, width)
    cols = np.nonzero(mask.any(axis=0))[0]
    lesion_width = float(cols.max() - cols.min() + 1)

    # posterior features (enhancement > 0, shadowing < 0), applied before the lesion itself
    if p.posterior != 0.0:
        column = _posterior_column(mask, lesion_width)
        echo = echo * np.clip(1.0 + p.posterior * column, 0.05, None)

    # echogenic capsule (benign) or halo (malignant) just outside the boundary
    if p.rim > 0.0:
        dist_out = ndi.distance_transform_edt(~mask)
        ring = np.exp(-((dist_out - 0.5 * p.rim_width) / max(p.rim_width, 1.0)) ** 2) * (dist_out > 0)
        if p.malignant:  # halos are thick and patchy
            ring = ring * np.clip(1.0 + 0.6 * _smooth_field(rng, mask.shape, 3.0), 0.0, None)
        echo = echo * (1.0 + p.rim * ring)

    # hypoechoic lesion with heterogeneous internal echoes and a soft (or indistinct) edge
    soft = ndi.gaussian_filter(mask.astype(np.float64), p.edge_sigma)
    inner = p.contrast * np.exp(p.heterogeneity * _smooth_field(rng, mask.shape, rng.uniform(2.0, 5.0)))
    inner = np.minimum(inner, 0.8)
    echo = echo * (1.0 - soft + soft * inner)

    # multiplicative Rayleigh speckle, partially developed
    speckle = _rayleigh_speckle(rng, (height, width), rng.uniform(0.6, 1.1), rng.uniform(1.2, 2.6))
    k = rng.uniform(0.65, 0.95)
    rf = echo * ((1.0 - k) + k * speckle)

    # log compression with a random dynamic range and gain, then a slight blur and noise
    db = 20.0 * np.log10(rf + 1e-6)
    dyn_range = rng.uniform(30.0, 42.0)
    top = float(np.percentile(db, 99.5)) + rng.uniform(-2.0, 2.0)
    img = (db - (top - dyn_range)) / dyn_range
    img = np.clip(img, 0.0, 1.0) ** rng.uniform(1.1, 1.6)
    img = ndi.gaussian_filter(img, rng.uniform(0.4, 0.8))
    img = img * rng.uniform(0.85, 1.0) + rng.normal(0.0, 0.012, img.shape)
    image = np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
    return image, mask.astype(np.uint8)

