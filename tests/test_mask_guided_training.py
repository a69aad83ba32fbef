"""Gu et al.'s system: loss terms on known numbers, the (1+1) schedule, the frozen parser, paired identity,
and learning on the synthetic face world at 64² against baselines that ignore the input."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from conftest import synthetic_tensors
from torch.utils.data import DataLoader

from datamodules.labels import CELEBAMASK_TO_HELEN
from portrait_models.mask_guided import components as C
from portrait_models.mask_guided.module import (
    LOSS_PRESETS,
    OFFICIAL_PARSING_CLASS_WEIGHTS,
    PAIRED_TERMS,
    MaskGuidedSystem,
    local_reconstruction_loss,
    official_lr_factor,
    pairing_permutation,
    penultimate_feature_matching,
    resolve_loss_weights,
)
from portrait_models.parsing.unet import UNet

TINY = dict(
    image_size=64, ngf=8, ae_width=8, latent_dim=32, fc_hidden=64, feat_channels=16, n_res_blocks=1, ndf=8,
    vgg_pretrained=False, loss_weights={"vgg": 0.0},
)  # fmt: skip


def helen_tensors(first: int, count: int, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = synthetic_tensors(first, count, size)
    return images, torch.from_numpy(CELEBAMASK_TO_HELEN)[labels]


def _loader(images: torch.Tensor, labels: torch.Tensor, batch_size: int = 4, seed: int = 0) -> DataLoader:
    return DataLoader(
        [{"image": x, "label": y} for x, y in zip(images, labels, strict=True)],
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
    )


def _trainer(**kwargs) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, **kwargs,
    )  # fmt: skip


def train_parser(images: torch.Tensor, labels: torch.Tensor, steps: int, seed: int, feature_scale: int) -> UNet:
    """A small 11-class U-Net trained with plain pixel CE (Eq. 7)."""
    torch.manual_seed(seed)
    net = UNet(11, feature_scale=feature_scale)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, images.shape[0], (16,), generator=g)
        loss = F.cross_entropy(net(images[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval().requires_grad_(False)


# ------------------------------------------------------------------------------------------ losses (§8.8)
def test_presets_and_overrides():
    assert resolve_loss_weights("official")["local"] == 5000 and resolve_loss_weights("paper")["local"] == 10
    assert resolve_loss_weights("official", {"parsing": 0})["parsing"] == 0
    with pytest.raises(ValueError, match="unknown loss term 'parse'"):
        resolve_loss_weights("official", {"parse": 0})
    with pytest.raises(ValueError, match="loss_preset"):
        resolve_loss_weights("pix2pix")
    assert LOSS_PRESETS["official"]["kl"] == 0 and LOSS_PRESETS["paper"]["vgg"] == 0


def test_weighted_parsing_cross_entropy_matches_a_hand_computation():
    system = MaskGuidedSystem(**TINY)
    logits = torch.tensor([[[[2.0, 0.0], [0.0, 1.0]]]]).repeat(1, 11, 1, 1)
    logits[0, 10] = torch.tensor([[0.0, 3.0], [1.0, 0.0]])
    label = torch.tensor([[[0, 10], [4, 10]]])
    system.attach_parser(torch.nn.Identity())
    got = system.parsing_loss(logits, label)
    w = torch.tensor(OFFICIAL_PARSING_CLASS_WEIGHTS)
    log_p = logits.log_softmax(1)[0]
    nll = [-log_p[0, 0, 0], -log_p[10, 0, 1], -log_p[4, 1, 0], -log_p[10, 1, 1]]
    weights = [w[0], w[10], w[4], w[10]]
    expected = sum(wi * li for wi, li in zip(weights, nll, strict=True)) / sum(weights)
    assert torch.allclose(got, expected)


def test_feature_matching_uses_only_the_penultimate_layer_of_each_scale():
    fake = [[torch.zeros(1, 2, 3, 3), torch.full((1, 4, 2, 2), 1.0), torch.zeros(1, 1, 2, 2)]] * 2
    real = [[torch.ones(1, 2, 3, 3), torch.full((1, 4, 2, 2), 3.0), torch.ones(1, 1, 2, 2)]] * 2
    assert penultimate_feature_matching(fake, real) == 4.0  # two scales × L1 of 2; official weight 5 each
    assert LOSS_PRESETS["official"]["feat"] == 5


def test_local_loss_sums_five_mse_means_with_masks_on_mouth_skin_hair():
    crops = {k: torch.zeros(1, 3, 2, 2) for k in C.COMPONENTS}
    decoded = {k: torch.ones(1, 3, 2, 2) * (i + 1) for i, k in enumerate(C.COMPONENTS)}
    half = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    masks = {"left_eye": None, "right_eye": None, "skin": half, "hair": half, "mouth": half}
    expected = 1 + 4 + 9 / 2 + 16 / 2 + 25 / 2
    assert torch.isclose(local_reconstruction_loss(decoded, crops, masks), torch.tensor(expected))


def test_kl_is_logged_but_not_in_the_official_total():
    system = MaskGuidedSystem(**TINY)
    terms = {k: torch.tensor(float(i + 1)) for i, k in enumerate(LOSS_PRESETS["official"])}
    with_kl = dict(terms, kl=torch.tensor(1e6))
    assert system.total_generator_loss(with_kl, True) == system.total_generator_loss(terms, True)


# ------------------------------------------------------------------------------------------ schedule (§8.9)
def test_unpaired_steps_drop_every_paired_term():
    system = MaskGuidedSystem(**dict(TINY, loss_weights={"parsing_recon": 1.0, "vgg": 1.0}))
    terms = {k: torch.tensor(1.0) for k in LOSS_PRESETS["official"]}
    w = system.weights
    unpaired = sum(w[k] for k in terms if k not in PAIRED_TERMS)
    assert system.total_generator_loss(terms, False) == unpaired
    assert system.total_generator_loss(terms, True) == sum(w.values())


def test_schedule_steps_d_every_other_iteration_and_g_d2_every_iteration():
    images, labels = helen_tensors(0, 12)
    system = MaskGuidedSystem(**TINY)
    snapshots = []

    class Snap(pl.Callback):
        def on_train_batch_end(self, trainer, module, *args):
            snapshots.append([
                next(module.generator.parameters()).detach().clone(),
                module.discriminator.discriminators[0].layers[0].conv.weight.detach().clone(),
                module.discriminator2.discriminators[0].layers[0].conv.weight.detach().clone(),
            ])  # fmt: skip

    before = [
        next(system.generator.parameters()).detach().clone(),
        system.discriminator.discriminators[0].layers[0].conv.weight.detach().clone(),
        system.discriminator2.discriminators[0].layers[0].conv.weight.detach().clone(),
    ]
    _trainer(max_steps=-1, max_epochs=1, limit_train_batches=3, callbacks=[Snap()]).fit(system, _loader(images, labels))
    assert int(system.iterations) == 3
    previous = before
    for step, snap in enumerate(snapshots):
        g_moved, d_moved, d2_moved = (not torch.equal(a, b) for a, b in zip(previous, snap, strict=True))
        assert g_moved and d2_moved
        assert d_moved == (step % 2 == 0)  # a_t = 1 on iterations 0, 2, ...
        previous = snap
    assert set(system.last_loss_terms) >= {f"g/{k}" for k in LOSS_PRESETS["official"]} | {"d2/total"}


def test_official_lr_schedule():
    assert [official_lr_factor(e) for e in (0, 10)] == [1.0, 1.0]
    assert official_lr_factor(11) == pytest.approx(44 / 45)  # 1-based epoch 12
    assert official_lr_factor(54) == pytest.approx(1 / 45) and official_lr_factor(55) == 0.0


def test_pairings():
    perm = pairing_permutation(5, "derangement", torch.Generator().manual_seed(1))
    assert sorted(perm.tolist()) == list(range(5)) and all(perm[i] != i for i in range(5))
    with pytest.raises(ValueError, match="pairing"):
        pairing_permutation(4, "shuffle")


# ------------------------------------------------------------------------------------------ frozen parser (§8.10)
def test_frozen_parser_gets_no_update_stays_in_eval_and_is_not_saved_but_passes_gradient(tmp_path):
    images, labels = helen_tensors(0, 8)
    parser = UNet(11, feature_scale=16)
    before = {k: v.clone() for k, v in parser.state_dict().items()}
    system = MaskGuidedSystem(**TINY)
    system.attach_parser(parser)
    modes = []

    class Mode(pl.Callback):
        def on_train_batch_end(self, trainer, module, *args):
            modes.append(any(m.training for m in module.parser.module.modules()))

    trainer = _trainer(max_epochs=1, limit_train_batches=2, callbacks=[Mode()])
    trainer.fit(system, _loader(images, labels))
    assert modes == [False, False]  # eval mode while the system trains
    assert not any(p.requires_grad for p in system.parser.parameters())
    for opt in trainer.optimizers:
        ids = {id(p) for group in opt.param_groups for p in group["params"]}
        assert not ids & {id(p) for p in parser.parameters()}
    assert all(torch.equal(before[k], v) for k, v in parser.state_dict().items())  # BN stats included
    assert not any(k.startswith("parser.") for k in system.state_dict())
    output = torch.zeros(2, 3, 64, 64, requires_grad=True)
    system.parsing_loss(output, labels[:2]).backward()
    assert output.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------ identity (§8.11)
def test_transfer_with_the_identity_permutation_equals_the_reconstruction_in_eval():
    images, labels = helen_tensors(0, 3)
    system = MaskGuidedSystem(**TINY).eval()
    with torch.no_grad():
        prepared = system.prepare(images, labels)
        codes = system.encode(prepared, sample=False)
        out = system.forward_paths(images, prepared, codes, torch.arange(3))
        assert torch.equal(out["transfer"], out["recon"])
        assert torch.allclose(system.reconstruct(images, labels), out["recon"], atol=1e-6)


def test_channels_last_computes_the_same_loss_terms_and_gradients():
    images, labels = helen_tensors(0, 2)
    out = []
    for channels_last in (False, True):
        torch.manual_seed(0)
        system = MaskGuidedSystem(**TINY, channels_last=channels_last)
        system.setup("fit")
        x = images.contiguous(memory_format=torch.channels_last) if channels_last else images
        torch.manual_seed(1)
        prepared = system.prepare(x, labels)
        codes = system.encode(prepared, sample=True)
        paths = system.forward_paths(x, prepared, codes, torch.tensor([1, 0]))
        terms = system.generator_terms(x, prepared, codes, paths, True)
        system.total_generator_loss(terms, True).backward()
        out.append((terms, {n: p.grad for n, p in system.generator.named_parameters() if p.grad is not None}))
        if channels_last:
            conv = next(m for m in system.generator.modules() if isinstance(m, torch.nn.Conv2d))
            assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    (terms0, grads0), (terms1, grads1) = out
    for name, value in terms0.items():
        assert torch.allclose(value, terms1[name], rtol=1e-4, atol=1e-6), name
    assert grads0.keys() == grads1.keys()
    # float32 summation order differs between the layouts; a conv bias before a BatchNorm has a gradient that is
    # zero up to rounding, hence a floor relative to the whole gradient (as in tests/test_ddp.py)
    floor = 1e-5 * float(torch.stack([g.norm() for g in grads0.values()]).norm())
    for name, grad in grads0.items():
        assert (grads1[name] - grad).norm() <= 1e-4 * grad.norm() + floor, name


def test_bad_input_names_the_expected_size():
    system = MaskGuidedSystem(**TINY)
    with pytest.raises(ValueError, match="64px"):
        system.prepare(torch.zeros(1, 3, 128, 128), torch.zeros(1, 128, 128, dtype=torch.long))
    with pytest.raises(ValueError, match="Helen's 11 labels"):
        MaskGuidedSystem(**dict(TINY, num_classes=19))


# ------------------------------------------------------------------------------------------ learning
# 16 epochs, the second half on the official linear decay to 0: at a constant lr 1e-3 the eval-mode model swings
# between epochs (reconstruction/mean-face MSE 0.39-0.79 over epochs 9-13 on one CPU), so a fixed epoch count
# passed on one machine's float rounding and failed on another's; with the decay the last five epochs stay within
# 0.35-0.43 (MSE ratio) and 0.86-0.88 (parsing) for seeds 0 and 1.
EPOCHS = 16


@pytest.fixture(scope="module")
def trained():
    """A tiny system trained on 96 synthetic faces (parsing loss off: no P_F), and a separately trained
    evaluator parser; held-out faces for scoring."""
    pl.seed_everything(0, verbose=False)
    images, labels = helen_tensors(0, 96)
    system = MaskGuidedSystem(**TINY, lr=1e-3, pairing="derangement", lr_constant_epochs=EPOCHS // 2,
                              lr_decay_epochs=EPOCHS // 2)  # fmt: skip
    _trainer(max_epochs=EPOCHS).fit(system, _loader(images, labels))  # 24 iterations per epoch
    evaluator = train_parser(images, labels, steps=150, seed=7, feature_scale=8)
    test_images, test_labels = helen_tensors(300, 16)
    return system.eval(), evaluator, images, test_images, test_labels


def test_paired_reconstruction_beats_the_mean_face(trained):
    system, _, train_images, images, labels = trained
    recon = system.reconstruct(images, labels)
    mse = F.mse_loss(recon, images)
    mean_face = train_images.mean(0, keepdim=True).expand_as(images)
    baseline = F.mse_loss(mean_face, images)
    assert mse < 0.5 * baseline, (float(mse), float(baseline))


def test_generated_faces_parse_as_the_target_mask_more_than_mask_ignoring_outputs(trained):
    system, evaluator, train_images, images, labels = trained
    source, source_labels = images.roll(1, 0), labels.roll(1, 0)
    output = system.swap(source, source_labels, images, labels)

    def accuracy(x: torch.Tensor) -> float:
        return float((evaluator(x).argmax(1) == labels).float().mean())

    mean_face = train_images.mean(0, keepdim=True).expand_as(images)
    acc, copy_acc, mean_acc = accuracy(output), accuracy(source), accuracy(mean_face)
    assert acc > copy_acc + 0.02 and acc > mean_acc + 0.02, (acc, copy_acc, mean_acc)


def test_hair_transfer_changes_hair_pixels_and_moves_them_toward_the_donor(trained):
    system, _, _, images, labels = trained
    donor, donor_labels = images.roll(1, 0), labels.roll(1, 0)
    own = system.component_features(images, labels)
    other = system.component_features(donor, donor_labels)
    base = system.generate(own, images, labels)
    swapped = system.generate(dict(own, hair=other["hair"]), images, labels)
    hair = (labels == 10).unsqueeze(1)
    inner = -F.max_pool2d(-hair.float(), 5, 1, 2) > 0  # hair minus a 2-px border
    outer = F.max_pool2d(hair.float(), 5, 1, 2) == 0  # outside hair plus a 2-px border
    delta = (swapped - base).abs().mean(1, keepdim=True)
    ratio = delta[inner].mean() / delta[outer].mean()
    assert ratio >= 3.0, float(ratio)

    def hair_colour(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (x * mask).sum((2, 3)) / mask.sum((2, 3)).clamp_min(1)

    donor_colour = hair_colour(donor, (donor_labels == 10).unsqueeze(1).float())
    has_hair = (hair.sum((1, 2, 3)) > 20) & ((donor_labels == 10).sum((1, 2)) > 20)
    before = (hair_colour(base, inner.float()) - donor_colour).norm(dim=1)[has_hair]
    after = (hair_colour(swapped, inner.float()) - donor_colour).norm(dim=1)[has_hair]
    assert has_hair.sum() >= 4 and after.mean() < 0.7 * before.mean(), (after.tolist(), before.tolist())


# ------------------------------------------------------------------------------------------ slow: Table 2 headline
@pytest.mark.slow
def test_parsing_loss_raises_the_parsing_accuracy_of_generated_faces():
    """The paper's Table 2 claim on the synthetic world: with L_GP (official weight 100, frozen P_F) the
    generated faces parse as their target masks more often than without it, same seed and budget, judged
    by an evaluator parser trained separately (other seed and width) from P_F."""
    images, labels = helen_tensors(0, 192)
    test_images, test_labels = helen_tensors(400, 32)
    p_f = train_parser(images, labels, steps=300, seed=3, feature_scale=8)
    evaluator = train_parser(images, labels, steps=300, seed=11, feature_scale=4)
    accuracy = {}
    for weight in (100.0, 0.0):
        pl.seed_everything(0, verbose=False)
        system = MaskGuidedSystem(**dict(TINY, loss_weights={"vgg": 0.0, "parsing": weight}), lr=1e-3,
                                  pairing="derangement")  # fmt: skip
        system.attach_parser(p_f)
        _trainer(max_epochs=12).fit(system, _loader(images, labels))
        system.eval()
        out = system.swap(test_images.roll(1, 0), test_labels.roll(1, 0), test_images, test_labels)
        accuracy[weight] = float((evaluator(out).argmax(1) == test_labels).float().mean())
    print(f"evaluator pixel accuracy of transfers: with L_GP {accuracy[100.0]:.4f}, without {accuracy[0.0]:.4f}")
    assert accuracy[100.0] > accuracy[0.0], accuracy
