"""Judge a synthetic-world MagGAN checkpoint's visible edits with a small CNN trained on the same world.

``python -m experiments.evaluate.maggan_synthetic_judge --checkpoint runs/.../last.ckpt [--visible-bald]``

The judge (4 convs, global max pool, one logit per judged attribute) trains on the world's training split
(``CelebADataModule`` with the config's settings: 600 faces, seed 0, STGAN crop at 64², label masks); it is
scored on the held-out faces (val + test) against the majority rate, then it reads every conflict-free single
flip (the checkpoint's ``flip_rule``, STGAN's test target by default, what the sample grid shows; ``--flip``
picks another) of those faces; ``--grid out.png`` also saves the
sample grid of the first 8 validation faces. Printed per attribute: the judge's held-out accuracy and majority
rate, the share of unedited faces it finds at the flip's target value, the share of edited faces at the target
(intensity 1 and 2), and at intensity 1 among the faces that lack the attribute (the edit turns it on: haired →
bald, glasses added). An edit the judge cannot tell from the unedited input scores its unedited rate.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from datamodules.celeba import CelebADataModule
from datamodules.labels import EDIT_ATTRIBUTES
from portrait_models.maggan.attributes import conflict_free_flip, rule_conflicts
from portrait_models.maggan.editing import load_maggan

JUDGED = ("Bald", "Eyeglasses", "Blond_Hair", "Black_Hair", "Brown_Hair")


class Judge(nn.Module):
    def __init__(self, outputs: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 32, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(32, 64, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(64, 64, 3, 1, 1), nn.LeakyReLU(0.2), nn.Conv2d(64, 64, 3, 1, 1), nn.LeakyReLU(0.2),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(64, outputs),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def stack(dataset) -> dict[str, torch.Tensor]:
    items = [dataset[i] for i in range(len(dataset))]
    return {key: torch.stack([item[key] for item in items]) for key in ("image", "attributes", "soft_masks")}


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--visible-bald", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--synthetic-images", type=int, default=600)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--judge-steps", type=int, default=800)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grid", help="also save the sample grid of the first 8 validation faces here (PNG)")
    parser.add_argument(
        "--flip", choices=("checkpoint", "conflict-free", "consistent"), default="checkpoint",
        help="the rule completing each flip (grid too): the checkpoint's flip_rule (default), STGAN's, or the world's",
    )  # fmt: skip
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    dm = CelebADataModule(
        image_size=args.image_size, augment=False, synthetic_images=args.synthetic_images,
        attribute_names=EDIT_ATTRIBUTES, soft_masks="labels", visible_bald=args.visible_bald,
    )  # fmt: skip
    dm.prepare_data()
    train = stack(dm.make_dataset("train", False))
    held = [stack(dm.make_dataset(split, False)) for split in ("val", "test")]
    held = {key: torch.cat([h[key] for h in held]) for key in held[0]}
    columns = [EDIT_ATTRIBUTES.index(name) for name in JUDGED]

    judge = Judge(len(JUDGED))
    opt = torch.optim.Adam(judge.parameters(), lr=2e-3)
    target = train["attributes"][:, columns]
    for _ in range(args.judge_steps):
        idx = torch.randint(0, len(target), (32,))
        loss = nn.functional.binary_cross_entropy_with_logits(judge(train["image"][idx]), target[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    judge.eval()

    model = load_maggan(args.checkpoint)
    rule = model.flip_rule if args.flip == "checkpoint" else args.flip.replace("-", "_")
    model.hparams.flip_rule = rule  # the grid follows the judged rule
    print(f"flip rule: {rule}")
    if args.grid:  # what the run's SampleGrid callback draws: the first 8 validation items
        from torchvision.utils import save_image

        val = dm.make_dataset("val", False)
        batch = torch.utils.data.default_collate([val[i] for i in range(min(8, len(val)))])
        save_image(model.sample_grid(batch).float().clamp(0, 1), args.grid)
        print(f"grid: {args.grid}")
    image, att, masks = held["image"], held["attributes"], held["soft_masks"]
    results: dict[str, dict[str, float]] = {}
    with torch.no_grad():
        said = (judge(image) > 0).float()
        print(f"{len(image)} held-out faces; % judged at the flip's target value")
        header = ("judge acc", "majority", "unedited", "edit x1", "edit x2", "added x1")
        print(f"{'attribute':12s} " + " ".join(f"{h:>8s}" for h in header))
        for j, name in enumerate(JUDGED):
            truth = att[:, columns[j]]
            goal = 1 - truth
            row = {
                "judge_accuracy": float((said[:, j] == truth).float().mean()),
                "majority": float(torch.maximum(truth.mean(), 1 - truth.mean())),
                "unedited": float((said[:, j] == goal).float().mean()),
            }
            diff = conflict_free_flip(att, name, rule_conflicts(rule))
            for scale in (1, 2):
                edited = model.edit(image, diff * scale, masks)
                hit = (judge(edited)[:, j] > 0).float() == goal
                row[f"edit_x{scale}"] = float(hit.float().mean())
                if scale == 1:  # the faces without the attribute that the edit turns on (e.g. haired -> bald)
                    row["added_x1"] = float(hit[truth == 0].float().mean())
            results[name] = row
            keys = ("judge_accuracy", "majority", "unedited", "edit_x1", "edit_x2", "added_x1")
            cells = " ".join(f"{100 * row[k]:7.1f}%" for k in keys)
            print(f"{name:12s} {cells}")
    return results


if __name__ == "__main__":
    main()
