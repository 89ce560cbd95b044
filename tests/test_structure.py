"""The layout stays as docs/architecture.md describes it: only the entry scripts read absl's flags, the
modules never import each other in a circle, no file outgrows one sitting, and every module works from
Python without absl having parsed anything."""
import ast
import os
import subprocess
import sys
import textwrap

from conftest import ROOT, TINY, write_mnist_folder

ENTRY_SCRIPTS = {"main", "bench", "quality", "folders", "paper"}  # the scripts that turn flags into plain values
MAX_LINES = 600


def modules(folder):
    """{module name: source} of the project's Python files in folder."""
    return {name[:-3]: open(os.path.join(folder, name)).read()
            for name in sorted(os.listdir(folder)) if name.endswith(".py")}


def flag_readers(sources):
    """The modules, other than the entry scripts, that use absl's flags (FLAGS, or flags imported from absl)."""
    readers = set()
    for name, source in sources.items():
        for node in ast.walk(ast.parse(source)):
            uses_flags = (isinstance(node, ast.Name) and node.id == "FLAGS") or \
                (isinstance(node, ast.Attribute) and node.attr == "FLAGS") or \
                (isinstance(node, ast.ImportFrom) and node.module == "absl" and any(a.name == "flags" for a in node.names))
            if uses_flags and name not in ENTRY_SCRIPTS:
                readers.add(name)
    return readers


def imports(sources):
    """{module: the project's modules it imports}, at its top or inside a function alike."""
    graph = {}
    for name, source in sources.items():
        found = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
        graph[name] = sorted(found & set(sources) - {name})
    return graph


def import_cycle(graph):
    """One circle of imports as a list of modules (the first one repeated at its end), or None."""
    state = {}

    def visit(module, path):
        state[module] = "open"
        for other in graph[module]:
            if state.get(other) == "open":
                return path[path.index(other):] + [other]
            if other not in state:
                cycle = visit(other, path + [other])
                if cycle:
                    return cycle
        state[module] = "done"
        return None

    for module in graph:
        if module not in state:
            cycle = visit(module, [module])
            if cycle:
                return cycle
    return None


def test_only_the_entry_scripts_read_flags():
    assert flag_readers(modules(ROOT)) == set()


def test_the_modules_import_each_other_without_a_circle():
    assert import_cycle(imports(modules(ROOT))) is None


def test_no_file_over_600_lines():
    long = {name: source.count("\n") for name, source in modules(ROOT).items() if source.count("\n") > MAX_LINES}
    assert long == {}


def test_the_checks_catch_a_planted_flag_read_and_a_planted_circle():
    sources = modules(ROOT)
    planted = dict(sources, serving=sources["serving"] + "\nfrom absl import flags\nSEED = flags.FLAGS.seed\n")
    assert flag_readers(planted) == {"serving"}
    # data.py importing train.py, which imports data.py: inside a function, where Python would not notice.
    planted = dict(sources, data=sources["data"] + "\n\ndef later():\n    import train\n")
    cycle = import_cycle(imports(planted))
    assert cycle is not None and cycle[0] == cycle[-1] and {"data", "train"} <= set(cycle)


NOTEBOOK = """
import sys
sys.path.insert(0, {root!r})
import {modules}
import numpy as np
import tensorflow as tf
from data import load_training_data
from model import build_dcgan
from run import Run, checkpoint_manager, run_name
from serving import generate
from train import train

config = dict(dataset="mnist", batch_size=32, train_size=None, output_height=28, output_width=28, c_dim=1, y_dim=10,
              z_dist="uniform_signed", ema_decay=0.9, seed=0, arch="dcgan", loss="gan", spectral_norm=False,
              input_fname_pattern=None, crop=False, input_height=None, input_width=None, **{tiny!r})
run = Run(config, run_name(config), "checkpoints", "samples", "logs", "export")
dcgan = build_dcgan(run.config)
data = load_training_data(run.config, "data", download=False)
train(dcgan, checkpoint_manager(dcgan, run.checkpoints), run, data, tf.distribute.get_strategy(), epochs=1)
images = generate(dcgan, [3, 1], n=2, seed=7)
print("generated", images.shape, images.dtype, "step", dcgan.trained_steps())
"""


def test_every_module_imports_and_works_from_python_without_flags(tmp_path):
    """What a notebook does: import any module, plain settings and calls, absl never parsing a command line."""
    write_mnist_folder(str(tmp_path / "data" / "mnist"))
    names = sorted(set(modules(ROOT)) - ENTRY_SCRIPTS)
    code = textwrap.dedent(NOTEBOOK).format(root=ROOT, modules=", ".join(names), tiny=TINY)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert "generated (2, 2, 28, 28, 1) uint8 step 10" in proc.stdout
    assert (tmp_path / "checkpoints" / "mnist_32_28_28" / "ckpt-10.index").exists()
    assert (tmp_path / "samples" / "mnist_32_28_28" / "train_00_0009.png").exists()
