"""MaskGAN training on the synthetic world: phases, EBST, learning, and mask editing."""

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from conftest import synthetic_tensors
from torch import Tensor
from torch.utils.data import DataLoader

from datamodules.labels import CLASS_INDEX
from portrait_models.maskgan.editing import render, transfer_parts
from portrait_models.maskgan.module import MaskGAN, checkpoint_bytes

TINY = dict(
    image_size=64, ngf=8, ndf=8, n_blocks=2, style_channels=8, blender_ngf=4, vae_base_channels=8,
    vae_latent_dim=32, vae_levels=4, vgg_pretrained=False, vgg_layers=2, lr_decay=False,
)  # fmt: skip


def loader(images, labels, batch_size=4, shuffle=True):
    items = [{"image": x, "label": y} for x, y in zip(images, labels)]
    return DataLoader(items, batch_size=batch_size, shuffle=shuffle, generator=torch.Generator().manual_seed(0))


def fit(model, data, max_steps=-1, callbacks=()):
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=max_steps, max_epochs=1000, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks),
    )  # fmt: skip
    trainer.fit(model, data)
    return trainer


class Snapshots(pl.Callback):
    """Copies of the MaskVAE and blender weights at each phase boundary."""

    def __init__(self):
        self.at = {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        phase = module.phase
        if phase not in self.at:
            self.at[phase] = {
                "vae": {k: v.clone() for k, v in module.mask_vae.state_dict().items()},
                "blender": {k: v.clone() for k, v in module.blender.state_dict().items()},
                "dmn": {k: v.clone() for k, v in module.dmn.state_dict().items()},
            }


def changed(before, after):
    return [k for k, v in before.items() if v.is_floating_point() and not torch.equal(v, after[k])]


class SaveCheckpoints(pl.Callback):
    """Saves a checkpoint after the first EBST batch (the MaskVAE's phase over, G_B stepped once)."""

    def __init__(self, path):
        self.path = path

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        first_ebst = module.hparams.maskvae_steps + module.hparams.dmn_steps + 1
        if int(module.batches_seen) == first_ebst:
            trainer.save_checkpoint(self.path)


def masks_onehot(labels):
    return F.one_hot(labels, 19).permute(0, 3, 1, 2).float()


def majority_mask(labels):
    """The per-pixel most frequent class of a set of label maps: a mask that ignores its input."""
    return F.one_hot(labels, 19).sum(0).argmax(-1)


VAE_STEPS = 200


@pytest.fixture(scope="module")
def ebst_run(tmp_path_factory):
    """MaskGAN† end to end: a really trained tiny MaskVAE (200 batches), 2 DMN batches, 3 EBST batches."""
    pl.seed_everything(0, verbose=False)
    images, labels = synthetic_tensors(0, 64, 64)
    model = MaskGAN(**TINY, maskvae_steps=VAE_STEPS, dmn_steps=2, ebst_steps=3, maskvae_lr=1e-3)
    snaps = Snapshots()
    path = tmp_path_factory.mktemp("ebst") / "in_ebst.ckpt"
    trainer = fit(model, loader(images, labels), callbacks=[snaps, SaveCheckpoints(path)])
    final = path.with_name("done.ckpt")
    trainer.save_checkpoint(final)
    return model, trainer, snaps, labels, path, final


def test_ebst_end_to_end_with_a_trained_mask_vae(ebst_run):
    model, trainer, snaps, train_labels, _, _ = ebst_run
    assert [p for p, _ in model.schedule] == ["maskvae", "dmn", "ebst"]
    assert int(model.batches_seen) == VAE_STEPS + 5 and model.phase == "done"  # stopped by itself
    assert trainer.global_step == VAE_STEPS * 1 + 2 * 2 + 3 * 4  # optimizer steps: VAE 1, DMN 2, EBST 4 per batch
    assert set(snaps.at) == {"maskvae", "dmn", "ebst"}

    # The MaskVAE learned masks: on held-out faces its reconstruction beats the per-pixel majority mask.
    _, held_out = synthetic_tensors(20_000, 16, 64)
    vae = model.mask_vae.eval()
    with torch.no_grad():
        mu_t, _ = vae.encode(masks_onehot(held_out))
        reconstruction = vae.decode(mu_t).argmax(1)
    vae_acc = (reconstruction == held_out).float().mean().item()
    majority_acc = (majority_mask(train_labels) == held_out).float().mean().item()
    print(f"MaskVAE held-out pixel accuracy {vae_acc:.3f}, per-pixel majority mask {majority_acc:.3f}")
    # measured: 0.89 vs 0.82 (one thread, fixed seeds)
    assert vae_acc > majority_acc + 0.04, (vae_acc, majority_acc)

    # EBST froze it (every tensor, BatchNorm statistics included) and trained the blender and the DMN.
    final_vae = model.mask_vae.state_dict()
    assert changed(snaps.at["maskvae"]["vae"], snaps.at["dmn"]["vae"])  # the VAE trains in its phase
    assert all(torch.equal(v, final_vae[k]) for k, v in snaps.at["ebst"]["vae"].items())
    assert not changed(snaps.at["maskvae"]["blender"], snaps.at["ebst"]["blender"])  # blender only in EBST
    assert changed(snaps.at["ebst"]["blender"], model.blender.state_dict())
    assert changed(snaps.at["ebst"]["dmn"], model.dmn.state_dict())
    for group in trainer.optimizers[1].param_groups:  # G_A's learning rate was lowered for EBST
        assert group["lr"] == pytest.approx(model.hparams.ebst_lr)

    # The simulated edits are real edits, by the latent rule z_inter = z_t + (z_ref - z_t) / lambda_inter.
    onehot = masks_onehot(held_out)
    m_inter, m_outer = (m.argmax(1) for m in model.simulate_edits(onehot))
    reference = held_out.roll(1, 0)  # M_ref: the batch rolled by one
    with torch.no_grad():
        mu_ref, _ = vae.encode(masks_onehot(reference))
        by_hand = vae.decode(mu_t + (mu_ref - mu_t) / model.hparams.lambda_inter).argmax(1)
        outer_by_hand = vae.decode(mu_t - (mu_ref - mu_t) / model.hparams.lambda_inter).argmax(1)
    assert torch.equal(m_inter, by_hand) and torch.equal(m_outer, outer_by_hand)
    moved = (m_inter != held_out).float().mean().item()
    to_ref_inter = (m_inter != reference).float().mean().item()
    to_ref_target = (held_out != reference).float().mean().item()
    print(f"M_inter differs from M_t on {moved:.3f}; from M_ref on {to_ref_inter:.3f} (M_t: {to_ref_target:.3f})")
    # measured: 0.13 of the pixels moved; 0.17 vs 0.23 from M_ref
    assert moved > 0.05, moved
    assert to_ref_inter < to_ref_target - 0.03, (to_ref_inter, to_ref_target)


def test_checkpoints_keep_only_what_is_still_needed(ebst_run):
    model, _, _, _, in_ebst, done = ebst_run
    names = model.optimizer_names()
    for path, phase in ((in_ebst, "ebst"), (done, "done")):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)  # plain tensors and containers
        stepped = {name: bool(state["state"]) for name, state in zip(names, checkpoint["optimizer_states"])}
        if phase == "ebst":  # the MaskVAE's phase is over; G_A, D and G_B are still training
            assert stepped == {"g": True, "d": True, "vae": False, "gb": True}
        else:  # schedule done: no optimizer state at all
            assert not any(stepped.values())
        assert not [k for k in checkpoint["state_dict"] if k.startswith("perceptual")]  # frozen VGG19
        expected = sum(checkpoint_bytes(model, phase).values())
        print(f"{phase}: {path.stat().st_size} bytes on disk, {expected} from state-dict shapes")
        # the file is the tensors plus pickled keys and hyper-parameters (measured: +9% at this tiny size)
        assert expected < path.stat().st_size < 1.2 * expected + 100_000
    sizes = checkpoint_bytes(model, "ebst", drop_finished=False)
    assert sizes["Adam vae"] == 2 * 4 * sum(p.numel() for p in model.mask_vae.parameters())
    resumed = MaskGAN.load_from_checkpoint(in_ebst, vgg_pretrained=False)
    assert int(resumed.batches_seen) == VAE_STEPS + 3 and resumed.phase == "ebst"


def test_paper_checkpoint_sizes_from_state_dict_shapes():
    with torch.device("meta"):
        paper = MaskGAN(vgg_pretrained=False)
    megabytes = {phase: sum(checkpoint_bytes(paper, phase).values()) / 1e6 for phase in ("dmn", "ebst", "done")}
    before = sum(checkpoint_bytes(paper, "ebst", drop_finished=False).values()) / 1e6
    # the README's table; the DMN has 89,702,595 parameters (359 MB), the MaskVAE 170,619,571 (683 MB)
    assert round(before) == 4319 and {k: round(v) for k, v in megabytes.items()} == {
        "dmn": 2202, "ebst": 2954, "done": 1440,
    }  # fmt: skip


def parse_accuracy(parser, images, labels, region=None):
    pred = parser(images).argmax(1)
    hits = pred == labels
    return hits[region].float().mean().item() if region is not None else hits.float().mean().item()


# The DMN of the synthetic demo's scaling rule (experiments/configs/maskgan_synthetic_64.yaml): the paper's 32x32
# bottleneck (one downsampling at 64²), narrower, with the config's CPU deviations (pixel L1 at 100, lr 1e-3,
# style_init pytorch, one random VGG slice). With 400 batches and the earlier lambda_l1 10, lr 2e-4, N(0, 0.02)
# style encoder it stayed at the mean face (held-out L1 0.365 vs 0.354).
DMN = dict(
    image_size=64, ngf=8, n_downsample=1, n_blocks=2, style_channels=8, style_downsample=3, ndf=8,
    vgg_pretrained=False, vgg_layers=1, lr_decay=False, ebst=False, lambda_l1=100.0, lr=1e-3,
    style_init="pytorch", ema_halflife_kimg=0.1, reuse_real_features=True,
)  # fmt: skip
DMN_STEPS = 800


@pytest.fixture(scope="module")
def trained(synthetic_parser):
    pl.seed_everything(0, verbose=False)
    images, labels = synthetic_tensors(0, 128, 64)
    test_images, test_labels = synthetic_tensors(20_000, 16, 64)
    model = MaskGAN(**DMN, dmn_steps=DMN_STEPS)
    fit(model, loader(images, labels))
    model.eval()
    with torch.no_grad():
        after = model.metric_samples({"image": test_images, "label": test_labels})["fake"]
    return model, synthetic_parser, (images, labels), (test_images, test_labels), after


def _baselines(train_labels, train_images, images, labels, parser, after):
    return {
        "l1": F.l1_loss(after, images).item(),
        "mean_face_l1": F.l1_loss(train_images.mean(0, keepdim=True).expand_as(images), images).item(),
        "grey_l1": images.abs().mean().item(),  # a constant grey (0 in [-1, 1]) output
        "agreement": parse_accuracy(parser, after, labels),
        "real_agreement": parse_accuracy(parser, images, labels),
        "majority_agreement": (majority_mask(train_labels) == labels).float().mean().item(),
    }


@pytest.mark.slow  # the 800-batch DMN fixture takes minutes of CPU
def test_dmn_reconstruction_beats_the_mean_face_and_grey(trained):
    model, parser, (train_images, train_labels), (images, labels), after = trained
    n = _baselines(train_labels, train_images, images, labels, parser, after)
    print(f"held-out L1 {n['l1']:.3f} (mean face {n['mean_face_l1']:.3f}, grey {n['grey_l1']:.3f})")
    # measured (one thread, fixed seeds): 0.226 against the mean face's 0.354 and grey's 0.389 (0.64x) on the AMD
    # EPYC, 0.192 (0.54x) on the Intel Xeon with AMX (2 Dec)
    assert n["l1"] < 0.8 * min(n["mean_face_l1"], n["grey_l1"]), n


# Why the session judge cannot show it: that parser (250 batches, tests/conftest.py) finds the true mask in the
# *real* held-out faces on only 0.853 of the pixels against the majority mask's 0.823 (AMD EPYC; 0.854 / 0.823 on
# the Intel Xeon), so generated faces could beat the majority mask by 0.03 only by parsing better than real ones;
# with it the 800-batch DMN's outputs measured 0.831 (AMD) and 0.825 (Xeon), +0.008 and +0.002. The margin is
# asked of a judge that can see it: the demo's judge (portrait_models.maskgan.demo, 800 batches of 16 on 256
# training faces, no global RNG), whose own lead over the majority mask on the real faces is asserted first.
# Measured with it (AMD EPYC, one thread, loaded, 2 Dec): generated 0.908, real 0.948, majority 0.823 (+0.085).
JUDGE_STEPS = 800


@pytest.fixture(scope="module")
def strong_judge():
    from portrait_models.maskgan.demo import train_judge_parser

    images, labels = synthetic_tensors(0, 256, 64)
    return train_judge_parser(images, labels, JUDGE_STEPS), labels


@pytest.mark.slow
def test_dmn_output_parses_as_its_mask_better_than_the_majority_mask(trained, strong_judge):
    model, _, (train_images, train_labels), (images, labels), after = trained
    judge, judge_labels = strong_judge
    n = _baselines(train_labels, train_images, images, labels, judge, after)
    judge_majority = (majority_mask(judge_labels) == labels).float().mean().item()
    print(
        f"the {JUDGE_STEPS}-batch judge finds the target mask in generated faces {n['agreement']:.3f}, in real ones "
        f"{n['real_agreement']:.3f}; majority mask {n['majority_agreement']:.3f} (of the judge's faces "
        f"{judge_majority:.3f})"
    )
    # the judge itself: on the real held-out faces well above the majority mask, or the margin below is unseeable
    assert n["real_agreement"] > max(n["majority_agreement"], judge_majority) + 0.05, n
    assert n["agreement"] > n["majority_agreement"] + 0.03, n


def _region_colour(images: Tensor, labels: Tensor, part: str) -> Tensor:
    """(B, 3) mean colour of each image over its pixels of class ``part`` (NaN where it has none)."""
    region = (labels == CLASS_INDEX[part]).unsqueeze(1).float()
    return (images * region).sum((2, 3)) / region.sum((2, 3))


# History of this test's margin (threshold 0.8 throughout): skin colour followed the source in 6 of 9 pairs at
# bc25e1f on an AVX2-only AMD EPYC (failed), in 9 of 9 at f114c23 on an Intel Xeon with AMX (2 Dec) and in 9 of 9
# at 1cc1219 on an AMD EPYC with AVX512-BF16 (3 Dec; hair 11 of 12); hair 10 of 12 the first two times. Whether
# the CPU or a commit made the first run fail is not known; the current code passes on every CPU it was run on,
# so the test is a plain one again (it was a non-strict xfail).
@pytest.mark.slow
def test_style_copy_takes_hair_and_skin_colour_from_the_source(trained):
    model, _, _, (images, labels), _ = trained
    sources = torch.arange(len(images)).roll(1)  # each face's mask in the style of another face
    out = render(model, labels, images[sources], labels[sources])
    for part in ("hair", "skin"):
        produced = _region_colour(out, labels, part)
        source = _region_colour(images[sources], labels[sources], part)
        own = _region_colour(images, labels, part)  # what copying the target's own look would give
        distinct = (source - own).norm(dim=1) > 0.3  # pairs whose two colours really differ
        distinct &= ~produced.isnan().any(1) & ~source.isnan().any(1) & ~own.isnan().any(1)
        to_source = (produced - source).norm(dim=1)[distinct]
        to_own = (produced - own).norm(dim=1)[distinct]
        print(f"{part}: {int(distinct.sum())} pairs; closer to the source in {(to_source < to_own).sum()}")
        assert distinct.sum() >= 6, part
        assert (to_source < to_own).float().mean() >= 0.8, (part, to_source, to_own)
        assert to_source.mean() < 0.5 * to_own.mean(), (part, to_source.mean(), to_own.mean())


@pytest.mark.slow  # shares the 800-batch DMN fixture with the tests above (minutes of CPU)
def test_edit_follows_the_edited_mask(trained):
    model, parser, _, (images, labels), _ = trained
    # attribute transfer: the mouth and lips of face i+1 into face i
    edited = transfer_parts(labels, labels.roll(1, 0))
    region = edited != labels
    assert region.sum() > 50
    out = render(model, edited, images, labels)
    follows_edit = parse_accuracy(parser, out, edited, region)
    follows_original = parse_accuracy(parser, out, labels, region)  # a model that ignored the edit
    print(f"edited pixels parse as the edited mask {follows_edit:.3f}, as the original {follows_original:.3f}")
    # measured: 0.417 of the edited pixels parse as the edited mask, 0.385 as the original one
    assert follows_edit > follows_original + 0.02, (follows_edit, follows_original)
    mouth = [CLASS_INDEX[p] for p in ("mouth", "u_lip", "l_lip")]
    assert torch.isin(edited[region], torch.tensor(mouth + [CLASS_INDEX["skin"]])).all()
