"""A web page that draws what a visitor asks for: `python main.py --demo` (Gradio).

Tabs: a grid of the chosen classes (a column per class, a row per seed, as `--generate` draws it) or,
of a model without classes, of pictures drawn from consecutive seeds; a walk between two seeds (of one
class) and, served from a run's checkpoints, the completion of a picture uploaded or drawn (latent.py). Every image comes from an exported SavedModel through
serving.generate, so a seed gives the same image here, on the command line and in TF Serving.
"""
import contextlib
import json
import os
import random
import tempfile
import threading
import time

# Before gradio is imported: it would otherwise report usage to its makers.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np

import utils
from latent import MASKS
from model import z_from_seeds
from serving import generate

MAX_SEED = 2 ** 31 - 1
# A demo stays up for weeks: the files it hands out are deleted this many seconds after they were
# made (Gradio's copies and the PNGs and GIFs it downloads from), and at most KEPT of its own remain.
CACHE_SECONDS, KEPT = 600, 100
# Pixel art, not photographs: scaled up without blurring.
CSS = ("#grid img, #walk img, #completion img "
       "{ image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain; }")


def check_seed(seed):
    if seed is None or not float(seed).is_integer() or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"the seed must be a whole number in 0..{MAX_SEED}")
    return int(seed)


COLUMNS = 8  # a model without classes: its pictures in rows of this many
FIRST_N, FIRST_PICTURES = 4, 16  # pictures of each class, or of a model without classes, on the first page


def class_names(model):
    """The model's classes as a visitor reads them: the export's names (MNIST's digits), else indices."""
    return list(getattr(model, "class_names", None) or []) or [str(k) for k in range(model.y_dim)]


def draw_grid(model, digits, n, seed, max_images):
    """uint8 grid [n*H, len(digits)*W, C] of n images per class (digits: their indices), image j drawn
    with seed + j; of a model without classes (digits ignored), n pictures in rows of COLUMNS."""
    if n is None or not float(n).is_integer() or n < 1:
        raise ValueError("the number of images must be a whole number of at least 1")
    if not model.y_dim:
        if n > max_images:
            raise ValueError(f"{int(n)} pictures: this demo draws at most {max_images} per request")
        images = generate(model, None, n=int(n), seed=check_seed(seed))[0]
        columns = min(COLUMNS, len(images))
        return utils.make_grid(utils.padded(images, columns), -(-len(images) // columns), columns)
    digits = [int(d) for d in digits or []]
    if not digits:
        raise ValueError("choose at least one class")
    if not all(0 <= d < model.y_dim for d in digits):
        raise ValueError(f"classes must be in 0..{model.y_dim - 1}")
    if len(digits) * n > max_images:
        raise ValueError(f"{len(digits)} classes x {int(n)} images is {len(digits) * int(n)} images; this demo "
                         f"draws at most {max_images} per request")
    return utils.label_columns(generate(model, digits, n=int(n), seed=check_seed(seed)))


def first_page(num_classes, max_images):
    """(classes, pictures of each) the page draws as it opens: every class, or as many as one request may ask for,
    FIRST_N of each; a model without classes (num_classes 0) FIRST_PICTURES."""
    n = min(FIRST_N if num_classes else FIRST_PICTURES, max_images)
    return min(num_classes, max_images // n), n


def walk(model, digit, seed_a, seed_b, steps):
    """uint8 frames [steps, H, W, C] of one class (digit: its index; None without classes), z moving in a
    straight line from seed_a's to seed_b's."""
    if model.y_dim and (digit is None or not 0 <= int(digit) < model.y_dim):
        raise ValueError(f"the class must be in 0..{model.y_dim - 1}")
    if steps is None or not 2 <= steps <= 64:
        raise ValueError("the walk takes 2 to 64 steps")
    ends = [generate_z(model, check_seed(s)) for s in (seed_a, seed_b)]
    t = np.linspace(0.0, 1.0, int(steps), dtype=np.float32)[:, None]
    z = (1 - t) * ends[0] + t * ends[1]
    return generate(model, [int(digit)] if model.y_dim else None, n=int(steps), z=z)[0]


def generate_z(model, seed):
    return z_from_seeds(np.array([seed], np.int64), model.z_dim, model.z_dist).numpy()[0]


def describe(model, path, eval_path=None):
    """Markdown naming the export, its step and sizes, and its --eval figures (from eval_path or an
    eval.json inside the export) when they are for this step."""
    text = (f"Serving **{path}**: training step {model.step}, z_dim {model.z_dim}, "
            f"{model.y_dim or 'no'} classes.")
    figures = read_eval(eval_path, model.step) or read_eval(os.path.join(path, "eval.json"), model.step)
    shown = [("class accuracy", "accuracy", "{:.2%}"), ("FID", "fid", "{:.2f}"), ("intra-class FID", "intra_fid",
             "{:.2f}"), ("KID", "kid", "{:.4f}"), ("precision", "precision", "{:.3f}"), ("recall", "recall", "{:.3f}"),
             ("lowest class diversity", "min_diversity", "{:.3f}")]
    measured = [f"{label} {form.format(figures[key])}" for label, key, form in shown if key in (figures or {})]
    return text + (f" Measured by `--eval`: {', '.join(measured)}." if measured else "")


def read_eval(path, step):
    try:
        with open(path) as f:
            figures = json.load(f)
    except (TypeError, OSError, ValueError):
        return None
    return figures if figures.get("step") == step else None


def picture_of(value):
    """The picture of an image editor's value (drawn on or uploaded): uint8 [H, W, C]."""
    picture = value.get("composite") if isinstance(value, dict) else value
    if picture is None or not np.asarray(picture).any():
        raise ValueError("upload a picture or draw one first")
    return np.asarray(picture)


def build_app(model, path, max_images=400, eval_path=None, completer=None):
    import gradio as gr

    scratch = tempfile.mkdtemp(prefix="dcgan_demo_")

    def shown(fn):
        """Runs fn, turning a bad request into a message on the page instead of a stack trace."""
        def wrapped(*args):
            try:
                return fn(*args)
            except ValueError as e:
                raise gr.Error(str(e), print_exception=False) from None
        return wrapped

    def on_grid(digits, n, seed):
        grid = draw_grid(model, digits, n, seed, max_images)
        asked = utils.name_of([str(d) for d in digits]) if model.y_dim else f"{int(n)}"
        png = os.path.join(scratch, f"{kind}_{asked}_seed{int(seed)}.png")
        utils.save_image(grid, png)
        keep_newest(scratch, KEPT)
        return utils.to_pil(grid), png

    def on_walk(digit, seed_a, seed_b, steps):
        frames = walk(model, digit, seed_a, seed_b, steps)
        gif = os.path.join(scratch, f"walk_{f'{int(digit)}_' if model.y_dim else ''}{int(seed_a)}_{int(seed_b)}.gif")
        utils.save_gif(list(frames) + list(frames[-2:0:-1]), gif)  # there and back, ends not repeated
        keep_newest(scratch, KEPT)
        return utils.to_pil(utils.make_grid(frames, 1, len(frames))), gif

    def on_complete(value, hole):
        strip, line = completer(picture_of(value), hole)
        return utils.to_pil(strip), line

    names = class_names(model)
    choices = [(name, str(k)) for k, name in enumerate(names)]
    digit_model = names == utils.digit_names(10)
    kind = "digits" if digit_model else "classes" if names else "pictures"
    first_classes, first_n = first_page(len(names), max_images)
    with gr.Blocks(title=f"DCGAN {kind}") as app:
        gr.Markdown(f"# Draw {kind} with a{' conditional' * bool(names)} DCGAN\n" + describe(model, path, eval_path))
        with gr.Tab(kind.capitalize()):
            with gr.Row():
                digits = gr.CheckboxGroup(choices, value=[v for _, v in choices][:first_classes],
                                          label=kind.capitalize(), show_select_all=True, elem_id="digits",
                                          visible=bool(names))
                n = gr.Slider(1, 16 if names else 64, value=first_n, step=1, elem_id="n",
                              label=f"Images per {'digit' if digit_model else 'class'}" if names else "Pictures")
                seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=MAX_SEED, elem_id="seed")
            with gr.Row():
                new_seed = gr.Button("New seed", elem_id="new_seed")
                draw = gr.Button("Generate", variant="primary", elem_id="generate")
            grid = gr.Image(label=f"One column per {'digit' if digit_model else 'class'}, one row per seed" if names
                            else "One picture per seed, row by row", format="png", type="pil", interactive=False,
                            height=448, elem_id="grid")
            download = gr.DownloadButton("Download PNG", elem_id="download")
        with gr.Tab("Walk between two seeds"):
            with gr.Row():
                digit = gr.Dropdown(choices, value=choices[0][1] if choices else None, elem_id="walk_digit",
                                    label="Digit" if digit_model else "Class", visible=bool(names))
                seed_a = gr.Number(0, label="From seed", precision=0, minimum=0, maximum=MAX_SEED)
                seed_b = gr.Number(1, label="To seed", precision=0, minimum=0, maximum=MAX_SEED)
                steps = gr.Slider(2, 32, value=10, step=1, label="Steps")
            go = gr.Button("Walk", variant="primary", elem_id="walk_button")
            strip = gr.Image(label="The walk, left to right", format="png", type="pil", interactive=False,
                             elem_id="walk")
            gif = gr.Image(label="As an animation", type="filepath", interactive=False, elem_id="walk_gif")
        if completer:
            with gr.Tab("Complete a picture"):
                gr.Markdown("Upload a picture, or draw one (white on black, as MNIST's digits), and pick the part to "
                            "hide: the generator fills it in, finding the class and the style from the rest "
                            "(Yeh et al. 2017).")
                with gr.Row():
                    canvas = gr.ImageEditor(np.zeros((280, 280, 3), np.uint8), type="numpy", image_mode="RGB",
                                            sources=["upload"], label="Picture", elem_id="picture",
                                            brush=gr.Brush(colors=["#ffffff"], default_color="#ffffff",
                                                           default_size=24))
                    with gr.Column():
                        hole = gr.Radio(list(MASKS), value="left", label="Hole", elem_id="hole")
                        fill = gr.Button("Complete", variant="primary", elem_id="complete")
                completion = gr.Image(label="The picture, the part kept, the generator's drawing, the completion",
                                      format="png", type="pil", interactive=False, elem_id="completion")
                found = gr.Markdown(elem_id="found")
            fill.click(shown(on_complete), inputs=[canvas, hole], outputs=[completion, found], api_name="complete")
        new_seed.click(lambda: random.randint(0, MAX_SEED), outputs=seed, api_name="new_seed")
        draw.click(shown(on_grid), inputs=[digits, n, seed], outputs=[grid, download], api_name="generate")
        go.click(shown(on_walk), inputs=[digit, seed_a, seed_b, steps], outputs=[strip, gif], api_name="walk")
        # A visitor sees digits at once, not an empty picture until Generate is pressed.
        app.load(shown(on_grid), inputs=[digits, n, seed], outputs=[grid, download], api_visibility="private")
    app.scratch_folder = scratch  # where the downloads are written, for the operator and the tests
    return app


def serve(model, path, host="127.0.0.1", port=7860, max_images=400, eval_path=None, block=True, max_queue=64,
          cache_seconds=CACHE_SECONDS, completer=None):
    """Starts the page and prints its address; blocks until SIGINT or SIGTERM, or returns the app
    (serving in the background) if not block. completer(picture uint8 [H, W, C], hole) -> (picture, line):
    the completion tab's (latent.complete_picture), absent without it."""
    # A flood waits in a queue of max_queue requests; past that each gets Gradio's "Queue is full" at once.
    app = build_app(model, path, max_images, eval_path, completer).queue(max_size=max_queue)
    if not block:
        return sweep_while_running(launch(app, path, host, port), cache_seconds)
    # Not gradio's block_thread: it stops only on KeyboardInterrupt, which never comes when SIGINT
    # was ignored at start-up (a background job), nor on SIGTERM.
    with utils.StopSignals("stopping the demo") as stop:
        sweep_while_running(launch(app, path, host, port), cache_seconds)
        # Woken each second: a signal that lands on one of the server's threads runs its Python
        # handler only once the main thread runs again.
        while not stop.received.wait(timeout=1):
            pass
    app.close()
    return app


def launch(app, path, host, port):
    try:
        app.launch(server_name=host, server_port=port, prevent_thread_lock=True, quiet=True, show_error=False,
                   css=CSS)
    except OSError as e:  # gradio's own advice names its environment variable, not our flags
        reason = str(e).split(". ")[0].rstrip(".")
        raise utils.DCGANError(f"cannot serve the demo on {host}:{port} ({reason}): pass another --demo_port "
                               "or --demo_host") from None
    print(f"Demo of {path} running on {app.local_url} (Ctrl-C to stop)", flush=True)
    return app


def sweep_while_running(app, age):
    """Deletes the files Gradio made for app once they are age seconds old, every tenth of age, in a
    thread of its own that ends with the app. Not Gradio's delete_cache: Gradio 6.31 walks each live set
    of files while requests add to it, and the RuntimeError that follows ends its schedule for good."""
    def sweep():
        while app.is_running:
            delete_old_files(app.temp_file_sets, age)
            time.sleep(max(0.1, age / 10))
    threading.Thread(target=sweep, name="demo cache sweep", daemon=True).start()
    return app


def delete_old_files(file_sets, age):
    """Removes the files named in the sets that were made over age seconds ago, and their names."""
    now = time.time()
    for files in file_sets:
        gone = set()
        for path in files.copy():  # one call in C: requests adding files meanwhile do not disturb it
            try:
                if now - os.lstat(path).st_ctime > age:
                    os.remove(path)
                    gone.add(path)
            except FileNotFoundError:
                gone.add(path)
        files.difference_update(gone)


def keep_newest(folder, n):
    """Removes all but the n newest files of folder."""
    made = []
    for entry in os.scandir(folder):
        with contextlib.suppress(OSError):  # removed meanwhile
            made.append((entry.stat().st_mtime, entry.path))
    for _, stale in sorted(made)[:-n]:
        with contextlib.suppress(OSError):
            os.remove(stale)
