"""PortraitGAN learns on the synthetic face world at 64² on CPU (slow), each claim against a baseline a broken
model would not beat, measured on identities never seen in training:

- open-mouth landmarks open the mouth: inside the true open mouth the output changes >= 3x more than outside
  the mouth box, and its error to the true open-mouth render is <= half the copy-input baseline's;
- the modality code alone picks the modality: the output is nearest to the true render of the requested
  modality for most faces (chance: 1 in 4);
- the cycle keeps identity: rec_A is nearest to its own identity among all test identities' renders;
- the paper's headline: the texture loss lowers the Gram distance to the target and raises SSIM (paper) on
  stylized pairs, same seed and budget (two trainings).

The model is the ``model`` section of ``experiments/configs/portraitgan_synthetic_64.yaml`` (what ``make
train-portraitgan`` trains) on that config's world (40 identities, 28 train / 12 test), with the learning-rate
schedule scaled to ``BATCHES``, except the open-mouth test, which trains its own recipe on top of that model section
(``OPEN_MOUTH_*`` below). Numbers are printed (``-s``) and quoted in the README.
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from datamodules import EmotionPairs
from datamodules.labels import EMOTION_INDEX
from datamodules.synthetic import MODALITIES, SyntheticFaceWorld, write_rafd
from portrait_models.portraitgan import PortraitGAN

pytestmark = pytest.mark.slow

SIZE, IDENTITIES, BATCHES = 64, 40, int(os.environ.get("PORTRAITGAN_TEST_BATCHES", "600"))
#: ``PORTRAITGAN_TEXTURE_CALIBRATE=1``: the texture ablation trains and judges with the calibrated random VGG19.
TEXTURE_CALIBRATE = os.environ.get("PORTRAITGAN_TEXTURE_CALIBRATE", "0") == "1"
CONFIG = Path(__file__).resolve().parents[1] / "experiments" / "configs" / "portraitgan_synthetic_64.yaml"
NEUTRAL, SURPRISED = EMOTION_INDEX["neutral"], EMOTION_INDEX["surprised"]
#: The config's synthetic-data choices the tests follow: the world's wide open mouths (``PORTRAITGAN_OPEN_MOUTHS=1``
#: turns them on for a run), the partner weights, the batch size.
DATA = yaml.safe_load(CONFIG.read_text())["data"]
OPEN_MOUTHS = bool(DATA.get("synthetic_open_mouths", False)) or os.environ.get("PORTRAITGAN_OPEN_MOUTHS") == "1"
PARTNER_WEIGHTS = DATA.get("partner_weights")
BATCH_SIZE = int(DATA.get("batch_size", 4))


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1).float() / 127.5 - 1


def _config_model() -> dict:
    """The synthetic config's model arguments at SIZE, its schedule scaled to BATCHES (2/3 constant, 1/3 decay)."""
    model = {k: v for k, v in yaml.safe_load(CONFIG.read_text())["model"].items() if k != "_target_"}
    schedule = dict(schedule_unit="batch", decay_start=BATCHES * 2 // 3, decay_length=BATCHES // 3)
    return {**model, "image_size": SIZE, **schedule}


def _train(
    dataset: EmotionPairs, seed: int = 0, batches: int = BATCHES, batch_size: int = BATCH_SIZE, **overrides
) -> PortraitGAN:
    """The synthetic config's model trained for ``batches`` batches (BATCHES) of ``batch_size`` pairs (the config's
    ``data.batch_size``, 4; ``seed``: init and data order), its schedule scaled to ``batches``, in eval mode."""
    pl.seed_everything(seed, verbose=False)
    schedule = dict(decay_start=batches * 2 // 3, decay_length=batches // 3)
    model = PortraitGAN(**{**_config_model(), **schedule, **overrides})
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=2 * batches, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(model, DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True))
    return model.eval()


def _world(root: Path, open_mouths: bool, partner_weights: dict | None) -> tuple[EmotionPairs, list[int]]:
    """The synthetic RaFD layout written at ``root``: its identity-disjoint training pairs (partners drawn with
    ``partner_weights``) and the test identities (world identity = RaFD subject - 1)."""
    write_rafd(root, IDENTITIES, seed=0, image_size=SIZE, modalities=MODALITIES, open_mouths=open_mouths)
    kw = dict(modalities=MODALITIES, split_by="identity", test_fraction=0.3, partner="uniform")
    train = EmotionPairs(root, "train", SIZE, False, partner_weights=partner_weights, **kw)
    test = EmotionPairs(root, "test", SIZE, False, **kw)
    return train, sorted({r.identity - 1 for r in test.items})


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[PortraitGAN, list[int]]:
    train, test_ids = _world(tmp_path_factory.mktemp("portraitgan_world"), OPEN_MOUTHS, PARTNER_WEIGHTS)
    return _train(train), test_ids


#: The open-mouth test's recipe (README, deviations and diagnosis): the world's visible open mouths
#: (``data.synthetic_open_mouths``), surprised / fearful partners drawn 12 / 4 times as often as the others
#: (``data.partner_weights``), a landmark-conditioned D (``model.d_condition_landmarks``), the moved-landmark L1
#: (``model.lambda_moved=100``), 8 pairs a batch for ``PORTRAITGAN_OPEN_MOUTH_BATCHES`` (2400) batches. With the
#: config as it is (600 batches of 4 uniform pairs, standard world) the mouth stays closed (ratio 1.42, MSE 0.663 vs
#: copy 0.658).
OPEN_MOUTH_BATCHES = int(os.environ.get("PORTRAITGAN_OPEN_MOUTH_BATCHES", "2400"))
OPEN_MOUTH_PARTNERS = {"surprised": 12, "fearful": 4}
OPEN_MOUTH_MODEL = dict(d_condition_landmarks=True, lambda_moved=100.0)


@pytest.fixture(scope="module")
def trained_open_mouth(tmp_path_factory: pytest.TempPathFactory) -> tuple[PortraitGAN, list[int]]:
    train, test_ids = _world(tmp_path_factory.mktemp("portraitgan_open_mouth_world"), True, OPEN_MOUTH_PARTNERS)
    return _train(train, batches=OPEN_MOUTH_BATCHES, batch_size=8, **OPEN_MOUTH_MODEL), test_ids


def test_open_mouth_landmarks_open_the_mouth(trained_open_mouth):
    """With the recipe above; the recipe keeps the modality and cycle claims, asserted here on the same model.
    Measured 4 Dec (Intel Xeon AMX, one thread, load ~1-1.5): ratio 3.34 (mean |change| inside the open mouth
    0.493, outside the mouth box 0.153), mouth MSE 0.284 vs copy 0.640 (0.44x), modality 0.885, cycle 1.000; 22 min
    23 s wall, 1289 CPU-s user. With lambda_moved=50 (driver, same recipe otherwise): 3.49, MSE 0.325 (0.51x)."""
    model, test_ids = trained_open_mouth
    world = SyntheticFaceWorld(0, num_identities=100, open_mouths=True)
    ratio, error, copy, inside, outside = _mouth_scores(model.generate, test_ids, world)
    print(
        f"\nmouth: change ratio {ratio:.2f} (mean |change| inside the open mouth {inside:.4f}, outside the mouth box "
        f"{outside:.4f}), mouth MSE {error:.4f} vs copy {copy:.4f} ({len(test_ids)} test ids)"
    )
    modality, cycle = _modality_accuracy(model, test_ids, world), _cycle_accuracy(model, test_ids, world)
    print(f"open-mouth recipe: modality accuracy {modality:.3f}, cycle identity accuracy {cycle:.3f}")
    assert ratio >= 3.0
    assert error <= 0.5 * copy
    assert modality >= 0.6
    assert cycle >= 0.8


def _mouth_scores(generate, identities: list[int], world: SyntheticFaceWorld) -> tuple[float, ...]:
    """The open-mouth test's (change ratio, mouth MSE, copy MSE, mean |change| inside the open mouth, mean |change|
    outside the mouth box) of ``generate(source, target landmarks)`` (photo code) on neutral faces given their own
    landmarks with points 48-67 from their surprised face; the last two, means over faces, tell whether a low ratio
    comes from its numerator (the mouth does not open) or its denominator (the rest of the face changes)."""
    ratios, errors, copy_errors, insides, outsides = [], [], [], [], []
    for p in identities:
        neutral, surprised = world.render(p, NEUTRAL, 0, SIZE), world.render(p, SURPRISED, 0, SIZE)
        target = neutral.landmarks.copy()
        target[48:68] = surprised.landmarks[48:68]
        source, truth = _tensor(neutral.image)[None], _tensor(surprised.image)
        out = generate(source, torch.from_numpy(target)[None])[0]
        inside = torch.from_numpy(surprised.label == 10)  # the open mouth
        x0, y0 = surprised.landmarks[48:68].min(0) - SIZE / 32
        x1, y1 = surprised.landmarks[48:68].max(0) + SIZE / 32
        outside = torch.ones(SIZE, SIZE, dtype=torch.bool)
        outside[int(y0) : int(np.ceil(y1)) + 1, int(x0) : int(np.ceil(x1)) + 1] = False
        change = (out - source[0]).abs().mean(0)
        insides.append(float(change[inside].mean()))
        outsides.append(float(change[outside].mean()))
        ratios.append(insides[-1] / outsides[-1])
        errors.append(float((out - truth).square().mean(0)[inside].mean()))
        copy_errors.append(float((source[0] - truth).square().mean(0)[inside].mean()))
    return tuple(float(np.mean(v)) for v in (ratios, errors, copy_errors, insides, outsides))


def test_generator_alone_learns_the_open_mouth():
    """Diagnosis of the open-mouth xfail: the synthetic config's G (no D, no cycle, no texture) trained with the
    paired L1 alone on neutral -> surprised photo pairs of the 28 training identities only (8 per batch, 900
    batches, Adam 5e-4 with the config's 2/3 constant + 1/3 linear decay) opens the mouth on those identities:
    the architecture can represent the edit from the 1-px landmark map at 64². Unseen identities are printed
    (measured 2 Dec, AMD EPYC, one thread: training ids ratio 8.10, MSE 0.099 vs copy 0.649; unseen 4.51, 0.489
    vs 0.697; 415 s wall contended). With ``PORTRAITGAN_OPEN_MOUTHS=1`` (the world's visible open mouths) it also
    passes on unseen identities (3 Dec: training ids 9.04, 0.052 vs 0.655; unseen 4.96, 0.249 vs 0.568; 131 s;
    4 Dec, Intel Xeon: unseen 5.11, 0.255 vs 0.568; mean |change| inside the open mouth 0.486, outside the box
    0.096)."""
    import torch.nn.functional as F

    from portrait_models.portraitgan.landmark_map import modality_planes, render_landmark_map
    from portrait_models.portraitgan.networks import PortraitGenerator

    model = _config_model()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    generator = PortraitGenerator(
        len(MODALITIES), model["ngf"], model["n_downsample"], model["n_blocks"], model["num_levels"],
        skips=model["g_skips"],
    )  # fmt: skip
    world = SyntheticFaceWorld(0, num_identities=100, open_mouths=OPEN_MOUTHS)
    train_ids, batches, lr = list(range(28)), 900, 5e-4
    faces = {(p, e): world.render(p, e, 0, SIZE) for p in range(IDENTITIES) for e in (NEUTRAL, SURPRISED)}
    neutral = torch.stack([_tensor(faces[p, NEUTRAL].image) for p in train_ids])
    surprised = torch.stack([_tensor(faces[p, SURPRISED].image) for p in train_ids])
    maps = render_landmark_map(np.stack([faces[p, SURPRISED].landmarks for p in train_ids]), SIZE)
    code = modality_planes(torch.zeros(8, dtype=torch.long), len(MODALITIES), (SIZE, SIZE))
    optimizer = torch.optim.Adam(generator.parameters(), lr=lr, betas=(0.5, 0.999))
    for step in range(batches):
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, 1 - (step - batches * 2 // 3) / (batches / 3))
        rows = torch.from_numpy(rng.integers(0, len(train_ids), 8))
        loss = F.l1_loss(generator(neutral[rows], maps[rows], code)[0], surprised[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    generator.eval()

    @torch.no_grad()
    def generate(source: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        return generator(source, render_landmark_map(landmarks, SIZE), code[:1], all_levels=False)

    seen = _mouth_scores(generate, train_ids, world)
    unseen = _mouth_scores(generate, list(range(28, IDENTITIES)), world)
    print(
        f"\nG alone, paired L1, neutral->surprised only: training ids ratio {seen[0]:.2f} (|change| inside "
        f"{seen[3]:.4f}, outside {seen[4]:.4f}), MSE {seen[1]:.3f} vs copy {seen[2]:.3f}; unseen ids ratio "
        f"{unseen[0]:.2f} (inside {unseen[3]:.4f}, outside {unseen[4]:.4f}), MSE {unseen[1]:.3f} vs copy "
        f"{unseen[2]:.3f}"
    )
    assert seen[0] >= 3.0
    assert seen[1] <= 0.5 * seen[2]


def test_modality_code_alone_selects_the_modality(trained):
    model, test_ids = trained
    accuracy = _modality_accuracy(model, test_ids, SyntheticFaceWorld(0, num_identities=100, open_mouths=OPEN_MOUTHS))
    assert accuracy >= 0.6  # "most test faces": a majority with a margin


def _modality_accuracy(model: PortraitGAN, test_ids: list[int], world: SyntheticFaceWorld) -> float:
    """Share of (face, modality) where the output for the photo with only the code changed is nearest to the true
    render of that modality (printed)."""
    hits, trials = 0, 0
    for p in test_ids:
        for emotion in (NEUTRAL, EMOTION_INDEX["happy"]):
            renders = [_tensor(world.render(p, emotion, m, SIZE).image) for m in range(len(MODALITIES))]
            landmarks = torch.from_numpy(world.render(p, emotion, 0, SIZE).landmarks)[None]
            for m in range(len(MODALITIES)):
                out = model.generate(renders[0][None], landmarks, torch.tensor([m]))[0]
                nearest = int(np.argmin([float((out - r).square().mean()) for r in renders]))
                hits, trials = hits + (nearest == m), trials + 1
    accuracy = hits / trials
    print(f"\nmodality: nearest-render accuracy {accuracy:.3f} over {trials} (chance 0.25)")
    return accuracy


def test_cycle_reconstruction_keeps_identity(trained):
    model, test_ids = trained
    accuracy = _cycle_accuracy(model, test_ids, SyntheticFaceWorld(0, num_identities=100, open_mouths=OPEN_MOUTHS))
    assert accuracy >= 0.8


def _cycle_accuracy(model: PortraitGAN, test_ids: list[int], world: SyntheticFaceWorld) -> float:
    """Share of test faces whose rec_A (photo -> surprised cartoon -> photo) is nearest to their own neutral photo
    among all test identities' (printed, with the reconstruction MSE)."""
    hits, rec_mse = 0, []
    for p in test_ids:
        a, b = world.render(p, NEUTRAL, 0, SIZE), world.render(p, SURPRISED, 2, SIZE)
        fake_b = model.generate(_tensor(a.image)[None], torch.from_numpy(b.landmarks)[None], torch.tensor([2]))
        rec_a = model.generate(fake_b, torch.from_numpy(a.landmarks)[None], torch.tensor([0]))[0]
        gallery = [_tensor(world.render(q, NEUTRAL, 0, SIZE).image) for q in test_ids]
        nearest = test_ids[int(np.argmin([float((rec_a - g).square().mean()) for g in gallery]))]
        hits += nearest == p
        rec_mse.append(float(((rec_a - _tensor(a.image)) / 2).square().mean()))
    accuracy = hits / len(test_ids)
    print(f"\ncycle: identity accuracy {accuracy:.3f} (chance {1 / len(test_ids):.3f}), rec MSE {np.mean(rec_mse):.4f}")
    return accuracy


@pytest.mark.xfail(
    strict=True,
    reason="measured 2 Dec at 600 batches each with model.g_skips (Intel Xeon, one thread; one seed, 12 unseen "
    "identities x 2 emotions x 3 stylized modalities): eta=0 Gram 0.002411 SSIM 0.586, eta=10 Gram 0.002437 SSIM "
    "0.584 - no effect either way; with PORTRAITGAN_TEXTURE_CALIBRATE=1 (unit-variance random VGG19) eta=10 lowers "
    "the Gram distance (0.01234 vs 0.01293) but not SSIM (0.583 vs 0.586); before g_skips: 0.00554/0.518 vs "
    "0.00563/0.517; with the seeded random VGG19 (no ImageNet weights here) the Gram term is ~0.06 of a G loss "
    "whose L1 part is ~2.5",
)
def test_texture_loss_lowers_gram_distance_and_raises_ssim_on_stylized_pairs(tmp_path):
    """The paper's headline ablation (Table 1: SSIM 0.619 -> 0.655 with L_texture): η = 10 vs η = 0, same
    seed, data and budget; scored on test identities' stylized pairs (photo -> same face in another modality)
    by the Gram distance of the texture network both runs share (the seeded random VGG19) and SSIM (paper)."""
    _texture_ablation(tmp_path, texture_calibrate=TEXTURE_CALIBRATE)


#: Overrides of the texture ablations' training seeds (``PORTRAITGAN_TEST_SEEDS=0,1``; each seed trains both η, the
#: claim is judged on the means over seeds) and of the η of the texture run (``PORTRAITGAN_TEXTURE_ETA``), whose
#: defaults each test sets, and the texture run's per-layer weights (``PORTRAITGAN_TEXTURE_LAYER_WEIGHTS=a,b``:
#: ``model.texture_layer_weights``; the judges stay unweighted).
_SEEDS, _ETA = os.environ.get("PORTRAITGAN_TEST_SEEDS"), os.environ.get("PORTRAITGAN_TEXTURE_ETA")
_WEIGHTS = os.environ.get("PORTRAITGAN_TEXTURE_LAYER_WEIGHTS")
TEXTURE_LAYER_WEIGHTS = None if not _WEIGHTS else [float(w) for w in _WEIGHTS.split(",")]

#: The stand-in's texture layers at 64²: relu1_1 and relu2_1, the layers whose receptive field (3 and 10 px, 5 and
#: 16 % of 64) is at most the share of the image the paper's deepest texture layer sees at 512² (relu5_1, 156 px,
#: 30 %); relu3_1's 24 px is 38 % of a 64² face, a layout statistic more than a texture (README, deviations).
STAND_IN_LAYERS = int(os.environ.get("PORTRAITGAN_TEXTURE_LAYERS", "2"))
#: The stand-in ablation's η: 3, not the paper's 10 (our Gram is divided by C·H·W, a scale the paper does not give,
#: so its η = 10 does not carry over); seeds 0 and 1, the spec's (C9). With η = 10 the Gram distance falls but SSIM
#: falls too in both seeds (README).
STAND_IN_ETA, STAND_IN_SEEDS = 3.0, (0, 1)


def test_texture_loss_with_the_synthetic_trained_vgg19_lowers_gram_distance_and_raises_ssim(tmp_path):
    """The same ablation with the texture network a VGG19 **trained on the synthetic world** (modality, emotion
    and identity of people 40-99, disjoint from the 40 here; ``python -m experiments.texture_vgg``), the
    stand-in for the ImageNet VGG19 that cannot be had here, loaded through ``model.texture_weights``.
    ``PORTRAITGAN_TEXTURE_WEIGHTS=FILE`` uses a file built by that command; otherwise the test builds it.
    The Gram distance is judged by that same network (the one the η run optimizes against), and also
    printed for an independent judge (the unit-variance random VGG19), which is not asserted.

    Measured 4 Dec (Intel Xeon AMX, one thread, contended, load ~3-5; stand-in rebuilt, held-out modality accuracy
    0.94), relu1_1+relu2_1, η = 3 vs 0, means over seeds 0 and 1: Gram 0.02014 vs 0.02135, SSIM (paper) 0.5707 vs
    0.5693 - both effects, but the SSIM rise is small and not in every seed (seed 0 0.5832 vs 0.5862, seed 1 0.5581
    vs 0.5524). η = 10 (the paper's number): Gram 0.01945 vs 0.02135, SSIM 0.5636 vs 0.5693 (falls in both seeds);
    relu1_1..relu3_1 with layer weights 0.70, 0.63, 0.093 (each layer's photo-vs-stylized term equal), seed 0:
    3-slice Gram 0.1066 vs 0.1082, SSIM 0.5742 vs 0.5862. Earlier, seed 0 on an AMD EPYC (3 Dec, η = 10):
    relu1_1+relu2_1 Gram 0.01938 vs 0.02157, SSIM 0.5796 vs 0.5881; relu1_1..relu3_1 0.1111 vs 0.1333, SSIM 0.549
    vs 0.585; relu1_1 alone 0.008379 vs 0.008567, SSIM 0.5841 vs 0.5881."""
    from experiments.texture_vgg import train as train_texture_vgg

    weights = os.environ.get("PORTRAITGAN_TEXTURE_WEIGHTS")
    if not weights:
        weights = str(tmp_path / "texture_vgg19_synthetic.pth")
        train_texture_vgg(weights)
    _texture_ablation(
        tmp_path / "world", STAND_IN_SEEDS, STAND_IN_ETA, texture_weights=weights, texture_layers=STAND_IN_LAYERS
    )


def _texture_ablation(root: Path, seeds: tuple[int, ...] = (0,), eta: float = 10.0, **texture) -> None:
    """η = ``eta`` vs η = 0 for each of ``seeds`` (or the overrides above) on the synthetic config's model (3 VGG
    slices, relu1_1..relu3_1), both with the texture network ``texture`` (kwargs for PortraitGAN; ``texture_layers``
    overrides the 3 slices), judged by that network's (unweighted) Gram distance and SSIM (paper); asserts both
    improve with the texture loss, on the means over the seeds."""
    from portrait_models.portraitgan.networks import texture_network

    seeds = [int(s) for s in _SEEDS.split(",")] if _SEEDS else list(seeds)
    eta = float(_ETA) if _ETA else eta

    write_rafd(root, IDENTITIES, seed=0, image_size=SIZE, modalities=MODALITIES)
    kw = dict(modalities=MODALITIES, split_by="identity", test_fraction=0.3, partner="uniform")
    train = EmotionPairs(root, "train", SIZE, False, **kw)
    test = EmotionPairs(root, "test", SIZE, False, **kw)
    texture = {"texture_layers": 3, **texture}
    judges = {"loss network": PortraitGAN(**{**_config_model(), **texture}).texture}
    if "texture_weights" in texture:
        judges["random VGG19 (calibrated)"] = texture_network(pretrained=False, num_layers=3, seed=0, calibrate=True)
        if texture["texture_layers"] != 3:  # the same trained network on relu1_1..relu3_1, as measured before
            three = {**_config_model(), **texture, "texture_layers": 3}
            judges["loss network, 3 slices"] = PortraitGAN(**three).texture
    run = {**texture, "texture_layer_weights": TEXTURE_LAYER_WEIGHTS}
    test_ids = sorted({r.identity - 1 for r in test.items})
    scores: dict[float, list[tuple[dict[str, float], float]]] = {eta: [], 0.0: []}
    for seed in seeds:
        for lam in (eta, 0.0):
            model = _train(train, seed, lambda_texture=lam, **run)
            scores[lam].append(_texture_scores(model, judges, test_ids))
            gram, ssim = scores[lam][-1]
            print(f"\ntexture ablation {run}: seed {seed} eta={lam:g} SSIM {ssim:.4f} Gram "
                  + ", ".join(f"{name} {g:.5g}" for name, g in gram.items()), flush=True)  # fmt: skip
    mean = {}
    for lam, runs in scores.items():
        mean[lam] = (
            {name: float(np.mean([g[name] for g, _ in runs])) for name in judges},
            float(np.mean([s for _, s in runs])),
        )
    for lam, (gram, ssim) in mean.items():
        print(f"texture ablation mean over seeds {seeds}: eta={lam:g} SSIM {ssim:.4f} Gram "
              + ", ".join(f"{name} {g:.5g}" for name, g in gram.items()), flush=True)  # fmt: skip
    assert mean[eta][0]["loss network"] < mean[0.0][0]["loss network"]
    assert mean[eta][1] > mean[0.0][1]


def _texture_scores(model: PortraitGAN, judges: dict, test_ids: list[int]) -> tuple[dict[str, float], float]:
    """(mean Gram distance per judge, mean SSIM (paper)) of ``model`` on the test identities' stylized pairs: the
    neutral and surprised photo -> the same face in each of the three other modalities."""
    from metrics.functional import ssim_skimage014_per_image, to_unit_range

    world = SyntheticFaceWorld(0, num_identities=100)
    gram, ssim = {name: [] for name in judges}, []
    for p in test_ids:
        for emotion in (NEUTRAL, SURPRISED):
            photo = world.render(p, emotion, 0, SIZE)
            for m in (1, 2, 3):
                truth = _tensor(world.render(p, emotion, m, SIZE).image)[None]
                out = model.generate(_tensor(photo.image)[None], torch.from_numpy(photo.landmarks)[None],
                                     torch.tensor([m]))  # fmt: skip
                with torch.no_grad():
                    for name, judge in judges.items():
                        gram[name].append(float(judge(out, truth)))
                ssim.append(float(ssim_skimage014_per_image(to_unit_range(out), to_unit_range(truth))[0]))
    return {name: float(np.mean(v)) for name, v in gram.items()}, float(np.mean(ssim))
