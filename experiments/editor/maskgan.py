"""MaskGAN tab: paint the mask with a brush per class, render, style copy, attribute transfer, save.

The face and its mask come from files (a label PNG in the official order or a colour PNG in the project palette),
from a face-parser checkpoint, or from the synthetic face world. Rendering, reading and transfer are the
functions of ``portrait_models.maskgan.editing`` (the same as ``python -m experiments.edit maskgan``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from datamodules.labels import CELEBAMASK_CLASSES
from experiments.editor.common import (
    LEGEND_CSS,
    ModelCache,
    PageMessage,
    TabSpec,
    canvas_to_label,
    canvas_value,
    enlarge,
    guarded,
    mask_editor,
    model_header,
    palette_hex,
    require_face,
    require_model,
    save_edit,
    synthetic_example,
    tensor_to_uint8,
    uint8_to_tensor,
)

EDITING = "portrait_models.maskgan.editing"
SPEC = TabSpec(title="MaskGAN", experiment="maskgan_synthetic_64", train_command="make train-maskgan")
CSS = LEGEND_CSS


def load_model(path: Path, device: str):
    from experiments.edit.maskgan import load_maskgan

    return load_maskgan(path, device)


def load_parser(path: Path, device: str):
    from portrait_models.parsing import FaceParser

    return FaceParser.load_from_checkpoint(path, map_location=device).to(device).eval()


def file_path(value: Any) -> str | None:
    """The path of a gr.File / gr.Image(type="filepath") value (None when empty)."""
    if value is None:
        return None
    return str(getattr(value, "name", value))


def build(checkpoint: str | None, device: str, out_dir: Path) -> None:
    """The tab's components and events (call inside ``gr.Blocks``)."""
    import gradio as gr

    from portrait_models.maskgan import editing

    models, parsers = ModelCache(load_model, device), ModelCache(load_parser, device)

    with gr.Tab(SPEC.title, id="maskgan"):
        ckpt, status = model_header(
            SPEC, "maskgan", models, checkpoint,
            "Paint the mask with a brush per class (brush tool: colour and size; the canvas has undo and clear), "
            "**Render**, compare with the input, **Save** the result and the edited mask. Style copy renders the "
            "mask in the style of another face; attribute transfer takes the mouth and lips of a donor mask.",
            "a .ckpt or the official latest_net_G.pth",
        )  # fmt: skip
        with gr.Row():
            face = gr.Image(label="Face", type="filepath", format="png", sources=["upload"], elem_id="maskgan-face",
                            height=300)  # fmt: skip
            with gr.Column():
                mask_file = gr.File(label="Its mask: label PNG (0..18) or colour PNG", file_types=["image"],
                                    elem_id="maskgan-mask")  # fmt: skip
                parser_ckpt = gr.Textbox(label="…or parse the face with a face-parser checkpoint (FaceParser .ckpt)",
                                         elem_id="maskgan-parser")  # fmt: skip
                synthetic_example(SPEC, "maskgan", models, ckpt, [face, mask_file, status])
                use_btn = gr.Button("Edit this face", variant="primary", elem_id="maskgan-use")
        canvas, input_view, result, render_btn, reset_btn, save_btn = mask_editor(
            "maskgan", CELEBAMASK_CLASSES, palette_hex(), "hair"
        )
        with gr.Accordion("Style copy", open=False):
            with gr.Row():
                style_face = gr.Image(label="Style face", type="filepath", format="png", sources=["upload"],
                                      elem_id="maskgan-style-face", height=200)  # fmt: skip
                style_mask = gr.File(label="Its mask", file_types=["image"], elem_id="maskgan-style-mask")
        with gr.Accordion("Attribute transfer (paper Sec. 5: mouth and lips of a donor)", open=False):
            with gr.Row():
                donor_mask = gr.File(label="Donor mask", file_types=["image"], elem_id="maskgan-donor")
                parts = gr.CheckboxGroup(list(CELEBAMASK_CLASSES[1:]), value=list(editing.MOUTH_PARTS),
                                         label="Parts to take from the donor", elem_id="maskgan-parts")  # fmt: skip
                transfer_btn = gr.Button("Transfer into the mask", elem_id="maskgan-transfer")
        saved = gr.File(label="Saved files", file_count="multiple", interactive=False, elem_id="maskgan-saved")
        state = gr.State({})

    @guarded(4, "Reading the face")
    def on_use(path, face_path, mask_path, parser_path):
        model = require_model(SPEC, models, path)
        size = model.hparams.image_size
        face_path, mask_path = file_path(face_path), file_path(mask_path)
        if face_path is None:
            raise PageMessage("Load a face image first (upload one, or **Load a synthetic face**).")
        image = editing.read_image(face_path, size)
        if mask_path is not None:
            label = editing.read_mask(mask_path, size)
            source = Path(mask_path).name
        elif parser_path:
            parser = parsers.get(parser_path)
            with torch.no_grad():
                label = parser(image.to(device)).argmax(1).cpu()
            source = f"parsed by {parser_path}"
        else:
            raise PageMessage("Give the face's mask (a label or colour PNG) or a face-parser checkpoint to parse it.")
        label_np = label[0].numpy()
        face_state = {"image": tensor_to_uint8(image), "label": label_np}
        return (
            face_state,
            canvas_value(label_np),
            enlarge(face_state["image"]),
            None,
            f"Editing a {size}² face, mask {source}.",
        )

    @guarded(3, "Rendering")
    def on_render(path, face_state, value, style_path, style_mask_path):
        model = require_model(SPEC, models, path)
        require_face(face_state)
        size = model.hparams.image_size
        target = torch.from_numpy(canvas_to_label(value, size)).unsqueeze(0)
        style_path, style_mask_path = file_path(style_path), file_path(style_mask_path)
        if style_path is not None:
            if style_mask_path is None:
                raise PageMessage("Style copy needs the style face's own mask too.")
            style_image, style_label = editing.read_image(style_path, size), editing.read_mask(style_mask_path, size)
            style = f"style of {Path(style_path).name}"
        else:
            style_image = uint8_to_tensor(face_state["image"], size)
            style_label = torch.from_numpy(face_state["label"]).unsqueeze(0)
            style = "the face's own style"
        start = time.perf_counter()
        out = editing.render(model, target, style_image, style_label)
        seconds = time.perf_counter() - start
        rendered = tensor_to_uint8(out)
        new_state = {**face_state, "result": rendered, "edited": target[0].numpy()}
        changed = int((target[0].numpy() != face_state["label"]).sum())
        return new_state, enlarge(rendered), f"Rendered in {seconds:.2f} s ({style}; {changed} mask pixels edited)."

    @guarded(1, "Resetting the mask")
    def on_reset(face_state):
        return canvas_value(require_face(face_state)["label"]), "Mask reset to the face's own mask."

    @guarded(1, "Attribute transfer")
    def on_transfer(path, face_state, value, donor_path, chosen):
        model = require_model(SPEC, models, path)
        size = model.hparams.image_size
        require_face(face_state)
        if file_path(donor_path) is None:
            raise PageMessage("Give a donor mask for the attribute transfer.")
        if not chosen:
            raise PageMessage("Pick at least one part to transfer.")
        current = torch.from_numpy(canvas_to_label(value, size)).unsqueeze(0)
        donor = editing.read_mask(file_path(donor_path), size)
        edited = editing.transfer_parts(current, donor, tuple(chosen))
        return canvas_value(edited[0].numpy()), f"Took {', '.join(chosen)} from the donor mask: press **Render**."

    @guarded(1, "Saving")
    def on_save(face_state):
        require_face(face_state, rendered=True)
        stem = time.strftime("maskgan_%Y%m%d-%H%M%S")
        paths = save_edit(out_dir, stem, face_state["result"], face_state["edited"])
        return [str(p) for p in paths], f"Saved {', '.join(f'`{p}`' for p in paths)}."

    use_btn.click(on_use, [ckpt, face, mask_file, parser_ckpt], [state, canvas, input_view, result, status])
    render_btn.click(on_render, [ckpt, state, canvas, style_face, style_mask], [state, result, status])
    reset_btn.click(on_reset, [state], [canvas, status])
    transfer_btn.click(on_transfer, [ckpt, state, canvas, donor_mask, parts], [canvas, status])
    save_btn.click(on_save, [state], [saved, status])
