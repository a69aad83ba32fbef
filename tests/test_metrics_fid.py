"""FID / KID: exact agreement with NumPy/SciPy, torch-fidelity and torchmetrics on one fixed extractor,
states that really sum, cached and saved real statistics, and the offline Inception loader."""

import numpy as np
import pytest
import scipy.linalg
import torch
import torch_fidelity
from torch.utils.data import Dataset
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from torchmetrics.image.fid import FrechetInceptionDistance

from metrics.fid import FID, KID
from metrics.functional.fid import frechet_distance, kid_from_features, to_uint8
from metrics.inception import FrozenExtractor, RandomConvFeatureExtractor, build_fid_inception
from portrait_models.pretrained import WEIGHTS, MissingWeightsError, weights_dir

DIM = 8
SEED = 3


def _extractor() -> RandomConvFeatureExtractor:
    return RandomConvFeatureExtractor(num_features=DIM, seed=SEED)


def _images(n: int, shift: float = 0.0, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 32, 32, generator=generator) * 1.6 - 0.8 + shift
    return images.clamp(-1, 1)


@pytest.fixture(scope="module")
def sets() -> dict[str, torch.Tensor]:
    """Two uint8 image sets and their features (the extractor run once, in float64)."""
    real, fake = to_uint8(_images(96, seed=1)), to_uint8(_images(80, shift=0.15, seed=2))
    extractor = _extractor()
    with torch.no_grad():
        return {
            "real": real,
            "fake": fake,
            "f_real": extractor(real).double(),
            "f_fake": extractor(fake).double(),
        }


def _scipy_fid(f1: np.ndarray, f2: np.ndarray) -> float:
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _numpy_kid(f1: np.ndarray, f2: np.ndarray, subsets: int, size: int, seed: int = 2020) -> tuple[float, float]:
    """KID written out with explicit off-diagonal sums, the estimator of Bińkowski et al. (2018)."""
    rng, d, values = np.random.RandomState(seed), f1.shape[1], []
    for _ in range(subsets):
        x = f1[rng.choice(len(f1), size, replace=False)]
        y = f2[rng.choice(len(f2), size, replace=False)]
        kxx, kyy, kxy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        off_diagonal = ~np.eye(size, dtype=bool)
        values.append(kxx[off_diagonal].mean() + kyy[off_diagonal].mean() - 2 * kxy.mean())
    return float(np.mean(values)), float(np.std(values))


def _fid_metric(**kwargs) -> FID:
    return FID(feature_extractor=_extractor(), **kwargs)


def test_to_uint8_is_a_fixed_batch_independent_formula():
    x = torch.tensor([-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])
    assert to_uint8(x).tolist() == [0, 0, 64, 128, 191, 255, 255]
    batch = _images(4)
    assert torch.equal(to_uint8(batch)[:1], to_uint8(batch[:1]))
    exact = torch.arange(256, dtype=torch.float64) / 127.5 - 1  # every uint8 value round-trips
    assert torch.equal(to_uint8(exact), torch.arange(256, dtype=torch.uint8))
    assert torch.equal(to_uint8(exact.float()), torch.arange(256, dtype=torch.uint8))
    with pytest.raises(ValueError, match="floating-point"):
        to_uint8(torch.zeros(2, dtype=torch.uint8))


def test_frechet_distance_matches_scipy_and_torch_fidelity_formula():
    generator = torch.Generator().manual_seed(0)
    a, b = (
        torch.randn(50, 6, generator=generator, dtype=torch.float64),
        torch.randn(40, 6, generator=generator),
    )
    b = b.double() @ torch.randn(6, 6, generator=generator).double() + 0.3
    ours = frechet_distance(a.mean(0), a.T.cov(), b.mean(0), b.T.cov())
    assert ours.dtype == torch.float64
    assert ours.item() == pytest.approx(_scipy_fid(a.numpy(), b.numpy()), rel=1e-10)
    # Singular covariances (fewer samples than dimensions): torch-fidelity's eigenvalue formula. Its zero
    # eigenvalues come out as ±1e-16 round-off whose square roots (1e-8) bound the achievable agreement.
    c, e = a[:4], b[:5]
    s1, s2 = c.T.cov().numpy(), e.T.cov().numpy()
    diff = c.mean(0).numpy() - e.mean(0).numpy()
    eig = np.sqrt(np.linalg.eigvals(s1 @ s2).astype(complex)).real.sum()
    expected = diff @ diff + np.trace(s1) + np.trace(s2) - 2 * eig
    assert frechet_distance(c.mean(0), c.T.cov(), e.mean(0), e.T.cov()).item() == pytest.approx(expected, rel=1e-8)


def test_fid_of_a_set_against_itself_is_zero(sets):
    fid = _fid_metric()
    fid.update(sets["real"], real=True)
    fid.update(sets["real"], real=False)
    assert abs(fid.compute().item()) < 1e-9


def test_fid_equals_numpy_scipy_reference(sets):
    fid = _fid_metric()
    fid.update(sets["real"], real=True)
    fid.update(sets["fake"], real=False)
    expected = _scipy_fid(sets["f_fake"].numpy(), sets["f_real"].numpy())
    assert fid.compute().item() == pytest.approx(expected, rel=1e-9)
    assert expected > 0.01


def test_float_images_go_through_the_fixed_uint8_conversion(sets):
    floats = _images(96, seed=1)
    by_float, by_uint8 = _fid_metric(), _fid_metric()
    for metric, real in ((by_float, floats), (by_uint8, to_uint8(floats))):
        metric.update(real, real=True)
        metric.update(sets["fake"], real=False)
    assert by_float.compute().item() == by_uint8.compute().item()


class _TinyFidelityExtractor(FeatureExtractorBase):
    """The test extractor registered with torch-fidelity (same weights as ``_extractor()``)."""

    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)
        self.net = _extractor()

    @staticmethod
    def get_provided_features_list():
        return ("tiny",)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return "tiny"

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 32, 32, dtype=torch.uint8)

    def forward(self, x):
        return (self.net(x),)


class _Uint8Images(Dataset):
    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


def test_fid_and_kid_agree_with_torch_fidelity(sets):
    name = "portrait-gans-test-tiny"
    if name not in FEATURE_EXTRACTORS_REGISTRY:
        torch_fidelity.register_feature_extractor(name, _TinyFidelityExtractor)
    reference = torch_fidelity.calculate_metrics(
        input1=_Uint8Images(sets["fake"]),
        input2=_Uint8Images(sets["real"]),
        feature_extractor=name,
        fid=True,
        kid=True,
        kid_subsets=20,
        kid_subset_size=48,
        cuda=False,
        cache=False,
        save_cpu_ram=True,
        verbose=False,
    )
    fid, kid = _fid_metric(), KID(feature_extractor=_extractor(), subsets=20, subset_size=48)
    for metric in (fid, kid):
        metric.update(sets["real"], real=True)
        metric.update(sets["fake"], real=False)
    kid_mean, kid_std = kid.compute()
    assert fid.compute().item() == pytest.approx(reference["frechet_inception_distance"], rel=1e-3)
    assert kid_mean.item() == pytest.approx(reference["kernel_inception_distance_mean"], rel=1e-3, abs=1e-6)
    assert kid_std.item() == pytest.approx(reference["kernel_inception_distance_std"], rel=1e-3, abs=1e-6)


def test_fid_agrees_with_torchmetrics(sets):
    reference = FrechetInceptionDistance(feature=_extractor())
    reference.update(sets["real"], real=True)
    reference.update(sets["fake"], real=False)
    fid = _fid_metric()
    fid.update(sets["real"], real=True)
    fid.update(sets["fake"], real=False)
    assert fid.compute().item() == pytest.approx(reference.compute().item(), rel=1e-3)


def test_states_sum_over_chunks_and_processes(sets):
    whole = _fid_metric()
    whole.update(sets["real"], real=True)
    whole.update(sets["fake"], real=False)

    chunked = _fid_metric()
    for part in sets["real"].split(40):
        chunked.update(part, real=True)
    for part in sets["fake"].split(30):
        chunked.update(part, real=False)

    rank0, rank1 = _fid_metric(), _fid_metric()  # each "process" sees half, merged like DDP's all-reduce sum
    rank0.update(sets["real"][:50], real=True)
    rank1.update(sets["real"][50:], real=True)
    rank0.update(sets["fake"][:10], real=False)
    rank1.update(sets["fake"][10:], real=False)
    rank0.merge_state(rank1)

    expected = whole.compute().item()
    assert chunked.compute().item() == pytest.approx(expected, rel=1e-9)
    assert rank0.compute().item() == pytest.approx(expected, rel=1e-9)


def test_reset_keeps_real_statistics_unless_asked(sets):
    cached, uncached = _fid_metric(), _fid_metric(reset_real_features=True)
    for metric in (cached, uncached):
        metric.update(sets["real"], real=True)
        metric.update(sets["fake"], real=False)
        metric.reset()
    assert cached.real_samples == 96 and cached.fake_count.item() == 0
    assert uncached.real_samples == 0
    with (
        pytest.warns(UserWarning, match="before the ``update``"),
        pytest.raises(RuntimeError, match="2 generated"),
    ):
        cached.compute()


def test_real_statistics_round_trip_through_npz_keyed_by_protocol(sets, tmp_path):
    path = tmp_path / "stats" / "real.npz"
    source = _fid_metric()
    source.update(sets["real"], real=True)
    source.save_real_statistics(path, "val_96_tiny")
    assert FID.has_real_statistics(path, "val_96_tiny") and not KID.has_real_statistics(path, "val_96_tiny")
    kid_source = KID(feature_extractor=_extractor(), subsets=5, subset_size=32)
    kid_source.update(sets["real"], real=True)
    kid_source.save_real_statistics(path, "val_96_tiny")  # same file, same protocol, different states

    loaded = _fid_metric()
    assert FID.has_real_statistics(path, "val_96_tiny") and not FID.has_real_statistics(path, "val_2k")
    loaded.load_real_statistics(path, "val_96_tiny")
    loaded.update(sets["fake"], real=False)
    source.update(sets["fake"], real=False)
    assert loaded.compute().item() == pytest.approx(source.compute().item(), rel=1e-12)

    kid_loaded = KID(feature_extractor=_extractor(), subsets=5, subset_size=32)
    kid_loaded.load_real_statistics(path, "val_96_tiny")
    for metric in (kid_loaded, kid_source):
        metric.update(sets["fake"], real=False)
    assert kid_loaded.compute()[0].item() == pytest.approx(kid_source.compute()[0].item(), rel=1e-12)

    with pytest.raises(KeyError, match="no FID statistics for protocol 'val_2k'.*val_96_tiny"):
        loaded.load_real_statistics(path, "val_2k")
    wider = FID(feature_extractor=RandomConvFeatureExtractor(num_features=DIM + 1))
    with pytest.raises(ValueError, match="real_sum has shape"):
        wider.load_real_statistics(path, "val_96_tiny")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        loaded.load_real_statistics(tmp_path / "missing.npz", "val_96_tiny")


def test_kid_matches_numpy_reference_and_lowers_subset_size(sets):
    f_fake, f_real = sets["f_fake"], sets["f_real"]
    mean, std = kid_from_features(f_fake, f_real, subsets=15, subset_size=40)
    ref_mean, ref_std = _numpy_kid(f_fake.numpy(), f_real.numpy(), 15, 40)
    assert mean.item() == pytest.approx(ref_mean, rel=1e-9)
    assert std.item() == pytest.approx(ref_std, rel=1e-9)

    kid = KID(feature_extractor=_extractor(), subsets=15, subset_size=1000)
    kid.update(features=f_real.float(), real=True)
    kid.update(features=f_fake.float(), real=False)
    with pytest.warns(UserWarning, match="subset_size lowered from 1000 to 80"):
        lowered_mean, _ = kid.compute()
    assert lowered_mean.item() == pytest.approx(_numpy_kid(f_fake.numpy(), f_real.numpy(), 15, 80)[0], rel=1e-6)


def test_bad_inputs_get_clear_errors(sets):
    fid = _fid_metric()
    with pytest.raises(ValueError, match=r"expected images \(B, 3, H, W\)"):
        fid.update(sets["real"][:, :1], real=True)
    with pytest.raises(ValueError, match="uint8 images or floats"):
        fid.update(sets["real"].long(), real=True)
    with pytest.raises(ValueError, match="exactly one of"):
        fid.update(real=True)
    with pytest.raises(ValueError, match=rf"expected features \(B, {DIM}\)"):
        fid.update(features=torch.zeros(2, DIM + 1), real=True)
    with pytest.raises(ValueError, match="subset_size must be in"):
        kid_from_features(sets["f_fake"], sets["f_real"], subset_size=500)


def test_missing_inception_weights_name_file_and_sha256_without_downloading(tmp_path, monkeypatch):
    import torch_fidelity.feature_extractor_inceptionv3 as fidelity_inception

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(fidelity_inception, "load_state_dict_from_url", no_download)  # noqa: E501 allowed: no download
    monkeypatch.setenv("PORTRAIT_GANS_WEIGHTS", str(tmp_path))
    entry = WEIGHTS["inception_fid"]
    with pytest.raises(MissingWeightsError, match=entry.filename) as missing:
        build_fid_inception()
    assert entry.sha256 in str(missing.value) and "torch-fidelity" in str(missing.value)
    with pytest.raises(MissingWeightsError, match=entry.filename):
        FID()  # the default extractor is the standard Inception

    (tmp_path / entry.filename).write_bytes(b"not the inception weights")
    with pytest.raises(MissingWeightsError, match=f"expected {entry.sha256}"):
        build_fid_inception()


def test_frozen_extractor_stays_in_eval_mode_without_gradients():
    extractor = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    fid = FID(feature_extractor=extractor, num_features=4 * 30 * 30)
    fid.train()
    assert isinstance(fid.extractor, FrozenExtractor)
    assert not fid.extractor.training and not extractor[1].training
    assert not any(p.requires_grad for p in extractor.parameters())


@pytest.mark.slow
def test_inception_builder_loads_a_local_file_in_the_torch_fidelity_layout(tmp_path, monkeypatch):
    """The real Inception code path on a randomly initialised weight file (the real one is not in CI): loaded
    from the given path, 2048-d features, frozen, and the same FID as torchmetrics with the TF resize.
    Slow only because Inception at 299 px takes seconds per image on a shared 2-core CPU."""
    import dataclasses

    import torch_fidelity.feature_extractor_inceptionv3 as fidelity_inception

    # Build a state dict in the expected layout: construct the network without loading anything.
    monkeypatch.setattr(fidelity_inception, "load_state_dict_from_url", lambda *args, **kwargs: None)  # noqa: E501 allowed: no download
    monkeypatch.setattr(fidelity_inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
    random_weights = fidelity_inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).state_dict()
    monkeypatch.undo()
    weight_file = tmp_path / WEIGHTS["inception_fid"].filename
    torch.save(random_weights, weight_file)
    unverified = dataclasses.replace(WEIGHTS["inception_fid"], sha256=None)  # random weights: no digest to match
    monkeypatch.setitem(WEIGHTS, "inception_fid", unverified)

    inception = build_fid_inception(tmp_path)
    inception.train()
    assert not inception.training and not any(p.requires_grad for p in inception.parameters())
    images = to_uint8(_images(4, seed=4))
    fid = FID(feature_extractor=inception)
    features = fid.extract(images)
    assert features.shape == (4, 2048)
    fid.update(features=features[:2], real=True)
    fid.update(features=features[2:], real=False)
    reference = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(weight_file), antialias=False)
    reference.update(images[:2], real=True)
    reference.update(images[2:], real=False)
    assert fid.compute().item() == pytest.approx(reference.compute().item(), rel=1e-3)


@pytest.mark.slow
@pytest.mark.skipif(
    not (weights_dir() / WEIGHTS["inception_fid"].filename).is_file(),
    reason="the FID Inception weights are not in the weight cache (see portrait_models.pretrained)",
)
def test_standard_inception_matches_torchmetrics_tf_resize(sets):
    """With the real weights: 2048-d features, and torchmetrics' FID with the TF resize (antialias=False)."""
    path = str(weights_dir() / WEIGHTS["inception_fid"].filename)
    real, fake = sets["real"][:12], sets["fake"][:12]
    fid = FID()
    assert fid.extract(real[:2]).shape == (2, 2048)
    reference = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=path, antialias=False)
    for metric in (fid, reference):
        metric.update(real, real=True)
        metric.update(fake, real=False)
    assert fid.compute().item() == pytest.approx(reference.compute().item(), rel=1e-3)
