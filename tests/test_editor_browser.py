"""The browser editor in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

Run with ``make test-browser`` (installs chromium via apt when missing). The tiny checkpoints are trained here, in
the session, on the synthetic face world. ``EDITOR_SCREENSHOTS=docs`` also writes each tab's screenshot there.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import synthetic_tensors
from PIL import Image
from scipy.ndimage import binary_dilation

from datamodules.labels import CELEBAMASK_PALETTE, CELEBAMASK_TO_HELEN, CLASS_INDEX

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SIZE = 64
TIMEOUT_MS = 60_000  # the machine is shared; a render takes well under a second, a page event a few


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def label_loader(images, labels, batch_size=4):
    items = [{"image": x, "label": y} for x, y in zip(images, labels)]
    return torch.utils.data.DataLoader(items, batch_size=batch_size, shuffle=True,
                                       generator=torch.Generator().manual_seed(0))  # fmt: skip


def fit(model, loader, **trainer_args):
    """``model`` fitted on ``loader`` on the CPU, quietly (no logger, no checkpoints, no validation)."""
    import lightning.pytorch as pl

    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                         **trainer_args)  # fmt: skip
    trainer.fit(model, loader)
    return trainer


@pytest.fixture(scope="session")
def workdir():
    path = Path(tempfile.mkdtemp(prefix="editor_browser_"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def trained_checkpoint(name: str, workdir: Path, train) -> Path:
    """The checkpoint of the trainer that ``train()`` returns, saved as ``name`` in the session's folder;
    ``EDITOR_TEST_CACHE=dir`` keeps them there between runs (while developing) and trains only what is missing."""
    cache = os.environ.get("EDITOR_TEST_CACHE")
    path = Path(cache) / name if cache else workdir / name
    if not path.is_file():
        trainer = train()
        path.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="session")
def maskgan_checkpoint(workdir):
    """A 64² MaskGAN DMN trained for 100 batches (two downsamplings keep a mask edit's effect local)."""
    import lightning.pytorch as pl

    from portrait_models.maskgan.module import MaskGAN

    def train():
        images, labels = synthetic_tensors(0, 64, SIZE)
        model = MaskGAN(image_size=SIZE, ngf=8, ndf=8, n_downsample=2, n_blocks=1, style_channels=8, ebst=False,
                        dmn_steps=100, vgg_pretrained=False, vgg_layers=1, lambda_l1=10.0, lr_decay=False,
                        ema_halflife_kimg=0.1)  # fmt: skip
        pl.seed_everything(0, verbose=False)
        return fit(model, label_loader(images, labels), max_steps=-1, max_epochs=1000)  # the DMN stops itself

    return trained_checkpoint("maskgan.ckpt", workdir, train)


@pytest.fixture(scope="session")
def mask_guided_checkpoint(workdir):
    """A 64² Gu et al. system (tiny widths, no parsing loss) trained for 12 epochs of 96 synthetic faces in
    Helen's classes (288 iterations of the (1+1) schedule), the last 6 on the official linear lr decay: at a
    constant lr the tiny model swings between epochs, and on an Intel Xeon the 10-epoch constant-lr model's
    output hardly moved under a hair stroke (0.66 vs 0.07 away from it, 0-255 scale) where an AMD EPYC's passed."""
    import lightning.pytorch as pl

    from datamodules.labels import CELEBAMASK_TO_HELEN
    from portrait_models.mask_guided import MaskGuidedSystem

    def train():
        images, labels = synthetic_tensors(0, 96, SIZE)
        pl.seed_everything(0, verbose=False)
        model = MaskGuidedSystem(image_size=SIZE, ngf=8, ae_width=8, latent_dim=32, fc_hidden=64, feat_channels=16,
                                 n_res_blocks=1, ndf=8, vgg_pretrained=False, loss_weights={"vgg": 0.0}, lr=1e-3,
                                 pairing="derangement", lr_constant_epochs=6, lr_decay_epochs=6)  # fmt: skip
        loader = label_loader(images, torch.from_numpy(CELEBAMASK_TO_HELEN)[labels])
        return fit(model, loader, max_epochs=12)

    return trained_checkpoint("mask_guided.ckpt", workdir, train)


@pytest.fixture(scope="session")
def portraitgan_checkpoint(workdir):
    """A 64² PortraitGAN trained for 80 batches of emotion pairs of 8 synthetic people."""
    import lightning.pytorch as pl

    from datamodules import EmotionPairs
    from datamodules.synthetic import MODALITIES, write_rafd
    from portrait_models.portraitgan import PortraitGAN

    def train():
        write_rafd(workdir / "rafd", 8, seed=0, image_size=SIZE, modalities=MODALITIES)
        pairs = EmotionPairs(workdir / "rafd", "train", SIZE, False, modalities=MODALITIES, split_by="identity",
                             test_fraction=0.25, partner="uniform")  # fmt: skip
        pl.seed_everything(0, verbose=False)
        model = PortraitGAN(image_size=SIZE, ngf=8, n_downsample=2, n_blocks=1, ndf=8, texture_pretrained=False,
                            texture_layers=1, lr=5e-4, schedule_unit="batch", decay_start=1000,
                            decay_length=1)  # fmt: skip
        loader = torch.utils.data.DataLoader(pairs, batch_size=4, shuffle=True, drop_last=True)
        return fit(model, loader, max_steps=2 * 80)

    return trained_checkpoint("portraitgan.ckpt", workdir, train)


@pytest.fixture(scope="session")
def maggan_checkpoint(workdir):
    """A 64² MagGAN trained for 120 generator steps on synthetic faces with their exact masks."""
    import lightning.pytorch as pl

    from datamodules.labels import EDIT_ATTRIBUTE_COLUMNS, label_to_onehot
    from datamodules.synthetic import SyntheticFaceWorld
    from portrait_models.maggan import MagGAN

    def train():
        world = SyntheticFaceWorld(0)
        faces = [world.face(i, SIZE) for i in range(192)]
        images = torch.stack([torch.from_numpy(f.image).permute(2, 0, 1).float() / 127.5 - 1 for f in faces])
        attributes = torch.from_numpy(np.stack([f.attributes[EDIT_ATTRIBUTE_COLUMNS] for f in faces])).float()
        masks = label_to_onehot(torch.from_numpy(np.stack([f.label for f in faces])).long(), 19)
        g = torch.Generator().manual_seed(0)
        steps = 120
        index = torch.randint(0, len(faces), (steps + 1, 8), generator=g)
        batches = [{"image": images[i], "attributes": attributes[i], "soft_masks": masks[i]} for i in index]
        pl.seed_everything(0, verbose=False)
        model = MagGAN(image_size=SIZE, enc_dim=8, dec_dim=8, num_layers=4, max_dim=64, shortcut_layers=3,
                       inject_layers=3, spade_hidden=16, d_level_size=64, dis_dim=8, dis_layers=4, dis_max_dim=64,
                       dis_fc_dim=64, n_critic=1, lr=5e-4, max_g_steps=steps)  # fmt: skip
        return fit(model, torch.utils.data.DataLoader(batches, batch_size=None), max_epochs=1)

    return trained_checkpoint("maggan.ckpt", workdir, train)


@pytest.fixture(scope="session")
def face_files(workdir):
    """A synthetic face the models never saw, as an RGB PNG and a label PNG."""
    images, labels = synthetic_tensors(20_000, 1, SIZE)
    image = ((images[0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
    Image.fromarray(image).save(workdir / "face.png")
    Image.fromarray(labels[0].numpy().astype(np.uint8)).save(workdir / "face_label.png")
    return workdir / "face.png", workdir / "face_label.png", labels[0].numpy()


@pytest.fixture(scope="session")
def server(workdir, maskgan_checkpoint, maggan_checkpoint, portraitgan_checkpoint):
    from experiments.editor import build_app, common, launch

    common.RUNS = workdir / "runs"  # no run there: a tab without a checkpoint says which command trains one

    checkpoints = {"maskgan": maskgan_checkpoint, "maggan": maggan_checkpoint, "portraitgan": portraitgan_checkpoint}
    app = build_app({k: str(v) for k, v in checkpoints.items()}, "cpu", workdir / "saved")
    url = launch(app, port=free_port(), block=False)
    yield url
    app.close()


@pytest.fixture(scope="session")
def browser_context():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: `make test-browser` installs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            tempfile.mkdtemp(prefix="editor_chromium_"), executable_path=CHROMIUM, args=CHROMIUM_ARGS,
            headless=True, viewport={"width": 1400, "height": 1500},
        )  # fmt: skip
        context.set_default_timeout(TIMEOUT_MS)
        yield context
        context.close()


@pytest.fixture(scope="session")
def page(browser_context, server):
    page = browser_context.new_page()
    page.requests = []
    page.on("request", lambda r: page.requests.append(r.url))
    page.goto(server, wait_until="load")  # not "networkidle": the page keeps a heartbeat connection open
    page.locator("button[role=tab]").first.wait_for()
    page.wait_for_timeout(1000)  # let the page finish fetching what it loads after the first paint
    return page


def screenshot(page, name: str) -> None:
    target = os.environ.get("EDITOR_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(target) / f"editor_{name}.png"), full_page=True)


# ------------------------------------------------------------------------------------------------ page helpers
def status(page, tab: str) -> str:
    return page.locator(f"#{tab}-status").inner_text()


def wait_status(page, tab: str, text: str) -> str:
    page.wait_for_function(
        "([sel, text]) => document.querySelector(sel) && document.querySelector(sel).innerText.includes(text)",
        arg=[f"#{tab}-status", text],
    )
    return status(page, tab)


def fill(page, elem_id: str, value: str) -> None:
    page.locator(f"#{elem_id} textarea, #{elem_id} input").first.fill(value)


def upload(page, elem_id: str, path: Path) -> None:
    page.locator(f"#{elem_id} input[type=file]").set_input_files(str(path))
    page.wait_for_function(  # the component shows the file once the upload has finished
        "(sel) => { const el = document.querySelector(sel); return el && (el.querySelector('img') ||"
        " el.querySelector('a[download], .file-name, td')); }",
        arg=f"#{elem_id}",
    )


def result_image(page, tab: str) -> np.ndarray:
    """The result shown in the page (fetched from its src), reduced back to the model's size."""
    src = page.locator(f"#{tab}-result img").get_attribute("src")
    body = page.request.get(src if src.startswith("http") else page.url.rstrip("/") + "/" + src.lstrip("/")).body()
    import io

    array = np.asarray(Image.open(io.BytesIO(body)).convert("RGB")).astype(np.float32)
    step = array.shape[0] // SIZE
    return array[step // 2 :: step, step // 2 :: step]


def canvas_mapper(page, elem_id: str, canvas_size: int = 512):
    """Canvas pixel (x, y) -> page coordinates, from the editor's zoom and its centred image."""
    box = page.locator(f"#{elem_id} .pixi-target canvas").bounding_box()
    zoom = float(page.locator(f"#{elem_id} .zoom-number span").inner_text().strip().rstrip("%")) / 100
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    return lambda x, y: (cx + (x - canvas_size / 2) * zoom, cy + (y - canvas_size / 2) * zoom)


def pick_brush(page, elem_id: str, class_name: str) -> None:
    r, g, b = (int(c) for c in CELEBAMASK_PALETTE[CLASS_INDEX[class_name]])
    brush = page.locator(f"#{elem_id} button[aria-label='Brush']")
    if "highlight" not in (brush.get_attribute("class") or ""):  # a second click would put the brush away
        brush.click()
    page.locator(f"#{elem_id} button[aria-label='Color']").click()
    page.locator(f"#{elem_id} button.color[style*='rgb({r}, {g}, {b})']").click()
    box = page.locator(f"#{elem_id}").bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] - 20)  # a click outside closes the swatches
    page.locator(f"#{elem_id} .swatch").wait_for(state="detached")


def stroke(page, to_page, points) -> None:
    page.mouse.move(*to_page(*points[0]))
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(*to_page(x, y), steps=4)
    page.mouse.up()


def forehead_row(label: np.ndarray) -> tuple[int, int, int]:
    """A row across the forehead: halfway between the top of the skin and the top of the brows, and its skin span."""
    skin = label == CLASS_INDEX["skin"]
    brows = np.isin(label, [CLASS_INDEX["l_brow"], CLASS_INDEX["r_brow"]])
    y = (np.argwhere(skin)[:, 0].min() + np.argwhere(brows)[:, 0].min()) // 2
    xs = np.flatnonzero(skin[y])
    return int(y), int(xs.min()), int(xs.max())


# ------------------------------------------------------------------------------------------------------ tests
def test_page_loads_nothing_remote(page, server):
    assert page.requests, "the page made no request at all"
    remote = [u for u in page.requests if not u.startswith((server.rstrip("/"), "blob:", "data:"))]
    assert not remote, remote[:5]
    tabs = [t.strip() for t in page.locator("button[role=tab]").all_inner_texts()]
    assert tabs == ["MaskGAN", "MagGAN", "Mask-guided (Gu et al.)", "PortraitGAN"], tabs


def test_a_tab_without_checkpoint_says_which_command_trains_one(page, workdir):
    page.locator("button[role=tab]", has_text="Mask-guided").click()
    text = wait_status(page, "mask_guided", "make train-mask-guided")
    assert f"none found under {workdir / 'runs' / 'mask_guided_synthetic_64'}/" in text
    page.locator("#mask_guided-use").click()  # a handler without a model: the same message, no traceback
    page.wait_for_timeout(1000)
    assert "make train-mask-guided" in status(page, "mask_guided") and "Traceback" not in page.content()
    page.locator("button[role=tab]", has_text="MaskGAN").click()


def test_a_wrong_checkpoint_is_a_message_not_a_traceback(page, face_files, maskgan_checkpoint):
    face, _, _ = face_files
    fill(page, "maskgan-ckpt", str(face))
    page.locator("#maskgan-load").click()
    text = wait_status(page, "maskgan", "failed")
    assert f"Loading {face} as a MaskGAN checkpoint failed" in text and "Traceback" not in page.content()
    fill(page, "maskgan-ckpt", str(face.parent / "missing.ckpt"))
    page.locator("#maskgan-load").click()
    assert "checkpoint not found" in wait_status(page, "maskgan", "not found")
    fill(page, "maskgan-ckpt", str(maskgan_checkpoint))
    page.locator("#maskgan-load").click()
    wait_status(page, "maskgan", "Loaded")


# The mask tabs: the tab title, and the label set of its masks (CelebAMask-HQ's 19 classes or Helen's 11).
MASK_TABS = {"maskgan": ("MaskGAN", None), "mask_guided": ("Mask-guided", CELEBAMASK_TO_HELEN)}


@pytest.mark.parametrize("tab", list(MASK_TABS))
def test_hair_stroke_across_the_forehead(tab, page, face_files, workdir, request):
    face, face_label, label = face_files
    title, to_tab_labels = MASK_TABS[tab]
    page.locator("button[role=tab]", has_text=title).click()
    hair = CLASS_INDEX["hair"]
    if to_tab_labels is not None:  # a tab started without a checkpoint (the test above): load one, in its labels
        fill(page, f"{tab}-ckpt", str(request.getfixturevalue(f"{tab}_checkpoint")))
        page.locator(f"#{tab}-load").click()
        wait_status(page, tab, "Loaded")
        face_label = workdir / f"face_label_{tab}.png"
        Image.fromarray(to_tab_labels[label].astype(np.uint8)).save(face_label)
        hair = int(to_tab_labels[hair])
    upload(page, f"{tab}-face", face)
    upload(page, f"{tab}-mask", face_label)
    page.locator(f"#{tab}-use").click()
    wait_status(page, tab, f"Editing a {SIZE}² face")
    page.locator(f"#{tab}-render").click()
    wait_status(page, tab, "Rendered")
    before = result_image(page, tab)

    y, x0, x1 = forehead_row(label)  # the stroke in CelebAMask-HQ's classes: the same pixels in Helen's
    scale = 512 // SIZE
    page.wait_for_timeout(500)  # the canvas redraws its new background
    to_page = canvas_mapper(page, f"{tab}-canvas")
    pick_brush(page, f"{tab}-canvas", "hair")  # the hair brush has CelebAMask-HQ's hair colour in both tabs
    stroke(page, to_page, [((x0 + 1) * scale, y * scale + scale // 2), ((x1 - 1) * scale, y * scale + scale // 2)])
    page.locator(f"#{tab}-render").click()
    page.wait_for_function(  # a new render: the status counts the edited pixels
        "(sel) => /[1-9][0-9]* mask pixels edited/.test(document.querySelector(sel).innerText)", arg=f"#{tab}-status"
    )
    after = result_image(page, tab)
    page.locator(f"#{tab}-save").click()
    wait_status(page, tab, "Saved")
    screenshot(page, tab)

    saved = sorted((workdir / "saved").glob(f"{tab}_*_mask_label.png"))[-1]
    edited = np.asarray(Image.open(saved)).astype(np.int64)
    own = label if to_tab_labels is None else to_tab_labels[label]
    painted = edited != own
    row_span = np.zeros_like(painted)
    row_span[y, x0 + 2 : x1 - 1] = True
    # the saved mask carries hair along the stroke, and only there (the brush is ~3 model pixels wide)
    assert (edited[row_span] == hair).mean() > 0.9
    assert np.all(edited[painted] == hair)
    assert painted.sum() < 6 * (x1 - x0) and not painted[: max(y - 3, 0)].any() and not painted[y + 4 :].any()
    colour = np.asarray(Image.open(str(saved).replace("_label", "_color")))
    assert np.array_equal(
        colour[painted], np.broadcast_to(CELEBAMASK_PALETTE[CLASS_INDEX["hair"]], colour[painted].shape)
    )
    # the output changed in the painted region far more than away from it
    change = np.abs(after - before).mean(-1)
    far = ~binary_dilation(painted, iterations=8)
    inside, outside = change[painted].mean(), change[far].mean()
    print(f"{title}: mean |change| painted {inside:.1f}, away from the stroke {outside:.1f} (0-255 scale)")
    assert inside > 3 * outside + 1.0, (inside, outside)


def test_mask_guided_hair_transfer_from_a_donor(page, workdir, mask_guided_checkpoint):
    """Component transfer in the Gu tab: the donor's hair code changes the hair far more than the rest and moves
    its colour toward the donor's."""
    from scipy.ndimage import binary_erosion

    from datamodules.labels import ATTRIBUTE_INDEX
    from datamodules.synthetic import SyntheticFaceWorld

    world, faces, hair = SyntheticFaceWorld(0), [], int(CELEBAMASK_TO_HELEN[CLASS_INDEX["hair"]])
    for index in range(20_002, 20_100):  # two unseen hatless faces with plenty of hair of clearly other colours
        face = world.face(index, SIZE)
        mask = face.label == CLASS_INDEX["hair"]
        if face.attributes[ATTRIBUTE_INDEX["Wearing_Hat"]] or mask.sum() < 300:
            continue
        colour = face.image[mask].mean(0)
        if not faces or np.abs(colour - faces[0][2]).sum() > 150:
            faces.append((index, face, colour))
        if len(faces) == 2:
            break
    (target_index, target, _), (_, donor, donor_colour) = faces
    Image.fromarray(donor.image).save(workdir / "gu_donor.png")
    Image.fromarray(CELEBAMASK_TO_HELEN[donor.label].astype(np.uint8)).save(workdir / "gu_donor_label.png")

    page.locator("button[role=tab]", has_text="Mask-guided").click()
    fill(page, "mask_guided-ckpt", str(mask_guided_checkpoint))
    page.locator("#mask_guided-load").click()
    wait_status(page, "mask_guided", "Loaded")
    fill(page, "mask_guided-example-index", str(target_index))  # the tab's own synthetic-face loader
    page.locator("#mask_guided-example").click()
    wait_status(page, "mask_guided", f"Synthetic face {target_index}:")
    page.locator("#mask_guided-use").click()
    wait_status(page, "mask_guided", f"Editing a {SIZE}² face")
    page.locator("#mask_guided-render").click()
    wait_status(page, "mask_guided", "Rendered (0 mask pixels edited)")
    before = result_image(page, "mask_guided")

    page.get_by_text("Component transfer (pick the donor's components)").click()
    upload(page, "mask_guided-donor-face", workdir / "gu_donor.png")
    upload(page, "mask_guided-donor-mask", workdir / "gu_donor_label.png")
    parts = page.locator("#mask_guided-parts")
    parts.locator("label", has_text="mouth").click()  # the default component: off
    parts.locator("label", has_text="hair").click()
    page.locator("#mask_guided-transfer").click()
    wait_status(page, "mask_guided", "Took hair in")
    after = result_image(page, "mask_guided")

    target_hair = CELEBAMASK_TO_HELEN[target.label] == hair
    inner = binary_erosion(target_hair, iterations=2)  # hair minus a 2-px border
    outer = ~binary_dilation(target_hair, iterations=2)  # the rest minus a 2-px border
    change = np.abs(after - before).mean(-1)
    inside, outside = change[inner].mean(), change[outer].mean()
    before_gap, after_gap = (np.linalg.norm(x[inner].mean(0) - donor_colour) for x in (before, after))
    print(f"Mask-guided hair transfer: mean |change| hair {inside:.1f}, elsewhere {outside:.1f} (0-255 scale); "
          f"hair colour {before_gap:.1f} -> {after_gap:.1f} from the donor's")  # fmt: skip
    assert inside >= 3 * outside, (inside, outside)
    assert after_gap < 0.7 * before_gap, (after_gap, before_gap)  # the hair takes the donor's colour


def test_portraitgan_lower_lip_drag_changes_the_mouth(page, workdir):
    from datamodules.emotion import write_pts
    from datamodules.labels import EMOTION_INDEX
    from datamodules.synthetic import SyntheticFaceWorld

    face = SyntheticFaceWorld(0).render(50, EMOTION_INDEX["neutral"], 0, SIZE)  # not one of the 8 people trained on
    Image.fromarray(face.image).save(workdir / "pg_face.png")
    write_pts(workdir / "pg_face.pts", face.landmarks)
    page.locator("button[role=tab]", has_text="PortraitGAN").click()
    upload(page, "portraitgan-face", workdir / "pg_face.png")
    upload(page, "portraitgan-landmarks", workdir / "pg_face.pts")
    page.locator("#portraitgan-use").click()
    wait_status(page, "portraitgan", f"Editing a {SIZE}² face")
    page.locator("#portraitgan-render").click()
    wait_status(page, "portraitgan", "moved up to 0.0 px")
    before = result_image(page, "portraitgan")

    lip = page.locator("#portraitgan-stage circle[data-i='57']")  # the middle of the outer lower lip
    box = lip.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    stage_scale = 448 / SIZE
    drop = 5 * stage_scale  # 5 model pixels down
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x, y + drop / 2, steps=4)
    page.mouse.move(x, y + drop, steps=4)
    page.mouse.up()
    text = wait_status(page, "portraitgan", "moved up to 5.0 px")  # the drop re-rendered by itself
    assert "photo" in text
    after = result_image(page, "portraitgan")
    screenshot(page, "portraitgan")

    points = json.loads(page.locator("#portraitgan-points textarea, #portraitgan-points input").first.input_value())
    moved = np.abs(np.asarray(points) - face.landmarks).max(1) > 0.5
    assert np.flatnonzero(moved).tolist() == [57]
    # the mouth box (the lip landmarks, before and after the drag, with a margin) changes far more than the rest
    lips = np.concatenate([face.landmarks[48:68], np.asarray(points)[48:68]])
    (x0, y0), (x1, y1) = lips.min(0) - 2, lips.max(0) + 2
    mouth = np.zeros((SIZE, SIZE), bool)
    mouth[int(y0) : int(np.ceil(y1)) + 1, int(x0) : int(np.ceil(x1)) + 1] = True
    change = np.abs(after - before).mean(-1)
    inside, outside = change[mouth].mean(), change[~mouth].mean()
    print(f"PortraitGAN lower-lip drag: mean |change| mouth box {inside:.1f}, elsewhere {outside:.1f}")
    assert inside > 3 * outside + 1.0, (inside, outside)


def test_maggan_blond_slider_changes_the_hair(page, workdir):
    from datamodules.synthetic import SyntheticFaceWorld

    face = SyntheticFaceWorld(0).face(20_001, image_size=SIZE)  # not a training face
    Image.fromarray(face.image).save(workdir / "mg_face.png")
    Image.fromarray(face.label.astype(np.uint8)).save(workdir / "mg_label.png")
    page.locator("button[role=tab]", has_text="MagGAN").click()
    upload(page, "maggan-face", workdir / "mg_face.png")
    upload(page, "maggan-mask", workdir / "mg_label.png")
    page.locator("#maggan-use").click()
    wait_status(page, "maggan", f"Editing a {SIZE}² face")
    page.locator("#maggan-render").click()
    wait_status(page, "maggan", "no attribute changed")
    before = result_image(page, "maggan")

    slider = page.locator("#maggan-att-blond_hair input[type=range]")
    source = float(slider.input_value())
    box = slider.bounding_box()
    target_x = box["x"] + (2 if source > 0.5 else box["width"] - 2)  # to the other end of the slider
    page.mouse.click(target_x, box["y"] + box["height"] / 2)
    text = wait_status(page, "maggan", "Blond_Hair")
    assert "Blond_Hair" in text
    after = result_image(page, "maggan")
    screenshot(page, "maggan")

    hair = face.label == CLASS_INDEX["hair"]
    assert hair.sum() > 100
    change = np.abs(after - before).mean(-1)
    inside, outside = change[hair].mean(), change[~hair].mean()
    print(f"MagGAN Blond_Hair {source:g} -> {1 - round(source):g}: mean |change| hair {inside:.1f}, rest {outside:.1f}")
    assert inside > 2 * outside + 1.0, (inside, outside)
