"""MagGAN tab: a slider per edited attribute (continuous target intensities), masks from a file or the parser.

Each slider is the target value of one of the 13 attributes; it starts at the source value the critic's
classifier reads off the face, so ``att_diff = (target − source)·strength`` is 0 until a slider moves (STGAN's
slide test: 0.5 is half-way; strength > 1 exaggerates). **STGAN conflict rules** (on by default, as the edit CLI)
complete the target: a hair colour moved on turns the other two off, Bald on turns Bangs off and back; unticked,
only the moved sliders change. A checkpoint with ``flip_rule: consistent`` applies the world's rules instead (Bald
on also turns the hair colours off). Rendering is ``portrait_models.maggan.editing`` (the same as ``python -m
experiments.edit maggan``).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from PIL import Image

from experiments.editor.common import (
    ModelCache,
    PageMessage,
    TabSpec,
    enlarge,
    guarded,
    model_header,
    require_face,
    require_model,
    synthetic_example,
    tensor_to_uint8,
)

EDITING = "portrait_models.maggan.editing"
SPEC = TabSpec(title="MagGAN", experiment="maggan_synthetic_64", train_command="make train-maggan")
CSS = ""
VIEW = 384


def load_model(path: Path, device: str):
    from portrait_models.maggan.editing import load_maggan

    return load_maggan(path, device)


def slider_id(name: str) -> str:
    return f"maggan-att-{name.lower()}"


def build(checkpoint: str | None, device: str, out_dir: Path) -> None:
    import gradio as gr

    from datamodules.labels import EDIT_ATTRIBUTES
    from portrait_models.maggan import editing

    models = ModelCache(load_model, device)

    with gr.Tab(SPEC.title, id="maggan"):
        ckpt, status = model_header(
            SPEC, "maggan", models, checkpoint,
            "Move an attribute's slider (its target value; it starts at the value read off the face) and release "
            "it to render. **Strength** scales every change (1: as set, > 1 exaggerates).",
            "a .ckpt",
        )  # fmt: skip
        with gr.Row():
            face = gr.Image(label="Face", type="filepath", format="png", sources=["upload"], elem_id="maggan-face",
                            height=240)  # fmt: skip
            with gr.Column():
                mask_file = gr.File(label="Its masks: soft-mask .npz, label PNG or colour PNG", elem_id="maggan-mask")
                parser_ckpt = gr.Textbox(label="…or a face-parser checkpoint (FaceParser .ckpt, 19 classes)",
                                         elem_id="maggan-parser")  # fmt: skip
                synthetic_example(SPEC, "maggan", models, ckpt, [face, mask_file, status])
                use_btn = gr.Button("Edit this face", variant="primary", elem_id="maggan-use")
        with gr.Row():
            views = dict(type="numpy", format="png", interactive=False, height=VIEW)
            input_view = gr.Image(label="Input", elem_id="maggan-input", **views)
            result = gr.Image(label="Result", elem_id="maggan-result", **views)
        with gr.Row():
            strength = gr.Slider(0, 2, value=1, step=0.05, label="Strength", elem_id="maggan-strength")
            conflicts = gr.Checkbox(value=True, label="STGAN conflict rules (a hair colour on turns the others off; "
                                    "Bald and Bangs exclude each other)", elem_id="maggan-conflicts")  # fmt: skip
        sliders = []
        for row in range(0, len(EDIT_ATTRIBUTES), 5):
            with gr.Row():
                for name in EDIT_ATTRIBUTES[row : row + 5]:
                    sliders.append(gr.Slider(0, 1, value=0, step=0.05, label=name, elem_id=slider_id(name)))
        with gr.Row():
            render_btn = gr.Button("Render", variant="primary", elem_id="maggan-render")
            save_btn = gr.Button("Save result", elem_id="maggan-save")
        saved = gr.File(label="Saved files", file_count="multiple", interactive=False, elem_id="maggan-saved")
        state = gr.State({})

    @guarded(3 + len(sliders), "Reading the face")
    def on_use(path, face_path, mask_path, parser_path):
        model = require_model(SPEC, models, path)
        size = model.hparams.image_size
        if face_path is None:
            raise PageMessage("Load a face image first (upload one, or **Load a synthetic face**).")
        image = editing.read_face(face_path, size).to(device)
        if mask_path:
            masks = editing.read_soft_masks(mask_path)
        elif parser_path:
            masks = editing.parser_soft_masks(parser_path, image)
        else:
            masks = None
        if masks is not None and masks.shape[-1] != size:
            masks = torch.nn.functional.interpolate(masks.float(), size=(size, size), mode="bilinear")
        if masks is None and model.hparams.conditioning == "mask" and not model.hparams.seg_branch:
            raise PageMessage("This model uses mask-guided conditioning: give the face's masks or a parser checkpoint.")
        source = editing.source_attributes(model, image)
        face_state = {"image": image.cpu(), "masks": None if masks is None else masks.cpu(), "source": source.cpu()}
        values = [float(v) for v in source[0]]
        found = ", ".join(n for n, v in zip(EDIT_ATTRIBUTES, values) if v > 0.5) or "none"
        return (face_state, enlarge(tensor_to_uint8(image)), None, *values,
                f"Editing a {size}² face; attributes read off it: {found}.")  # fmt: skip

    @guarded(2, "Rendering")
    def on_render(path, face_state, scale, conflict_rules, *targets):
        model = require_model(SPEC, models, path)
        source = require_face(face_state)["source"]
        wanted = {
            n: float(t) for n, t, s in zip(EDIT_ATTRIBUTES, targets, source[0]) if abs(float(t) - float(s)) > 1e-6
        }
        rule = model.flip_rule if conflict_rules else "plain"  # the checkpoint's
        att_diff = editing.attribute_change(source, wanted, float(scale), rule=rule)
        start = time.perf_counter()
        out = editing.edit_face(model, face_state["image"], att_diff, face_state["masks"])
        seconds = time.perf_counter() - start
        rendered = tensor_to_uint8(out)
        changes = ", ".join(f"{n} {float(source[0, EDIT_ATTRIBUTES.index(n)]):g}→{v:g}" for n, v in wanted.items())
        partners = [n for i, n in enumerate(EDIT_ATTRIBUTES) if n not in wanted and float(att_diff[0, i]) != 0]
        if partners:
            changes += f"; turned off by the conflict rules: {', '.join(partners)}"
        return (
            {**face_state, "result": rendered},
            enlarge(rendered),
            (f"Rendered in {seconds:.2f} s (strength {float(scale):g}; {changes or 'no attribute changed'})."),
        )

    @guarded(1, "Saving")
    def on_save(face_state):
        require_face(face_state, rendered=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / time.strftime("maggan_%Y%m%d-%H%M%S_result.png")
        Image.fromarray(face_state["result"]).save(path)
        return [str(path)], f"Saved `{path}`."

    render_inputs = [ckpt, state, strength, conflicts, *sliders]
    use_btn.click(on_use, [ckpt, face, mask_file, parser_ckpt], [state, input_view, result, *sliders, status])
    render_btn.click(on_render, render_inputs, [state, result, status])
    for slider in [strength, *sliders]:
        slider.release(on_render, render_inputs, [state, result, status])
    conflicts.input(on_render, render_inputs, [state, result, status])
    save_btn.click(on_save, [state], [saved, status])
