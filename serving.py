"""Serving: the SavedModel --export writes for TensorFlow Serving (and its own named weights), the
loader of such an export, and generate(), which draws the images asked for from a DCGAN or an export
alike, as --generate, --eval and the demo do.

    export_savedmodel(dcgan, "export/mnist/1", step=200)
    model = load_savedmodel("export/mnist/1")
    images = generate(model, [3, 1, 4], n=8, seed=7)      # uint8 [3, 8, 28, 28, 1]
"""
import os
import random
import sys
import tempfile

import numpy as np
import tensorflow as tf

from model import z_from_seeds
from ops import computing_in
from utils import (DCGANError, check_memory, digit_names, first_line, label_columns, make_grid, name_of, padded,
                   save_image, save_json, tf_writing, to_uint8)
from visualize import COLUMNS

# Below this many images an export of a 16-bit generator computes in float32: a few images cost about
# the reading of G's weights, which a 16-bit layer reads, casts and reads again. The MNIST generator in
# bfloat16 took 4.01, 4.52, 6.22, 6.88 ms for 1, 2, 4, 8 images against float32's 3.57, 3.97, 5.22,
# 7.00 (AMD EPYC, AVX-512 BF16), and 17.7 against 25.8 ms for 64.
FLOAT32_BELOW = 8

class ServingModule(tf.Module):
    """What --export writes: the generator behind named signatures that take any batch size.

    serving_default(z, label) -> images; generate(label, seed) -> images, with z drawn in the graph;
    generate_png(label, seed) -> png_bytes (TF Serving's REST API base64-encodes '_bytes' outputs);
    config() -> the model's sizes, z distribution, class names and training step. An unconditional
    model's signatures take no label: serving_default(z), generate(seed), generate_png(seed).
    """

    def __init__(self, dcgan, step, class_names=()):
        super().__init__()
        # Keras 3 names every tf.Variable of a nested layer after the outer layer only
        # ('generator/kernel' for all kernels), and session-based loaders (TF Serving,
        # saved_model_cli run) then mix the weights up. So the export holds its own copies, named
        # after the weights' unique Keras paths, and runs the generator statelessly on them.
        # The bound method, not the DCGAN: tf.Module would track a DCGAN attribute and export all its state.
        self._sample = dcgan.sample
        self._in_float32 = None if dcgan.precision == "float32" else lambda: computing_in(dcgan.generator, "float32")
        trainable, non_trainable = dcgan.sampling_weights()
        self.trainable_weights = [tf.Variable(tf.identity(value), name=w.path, trainable=False)
                                  for w, value in zip(dcgan.generator.trainable_variables, trainable)]
        self.non_trainable_weights = [tf.Variable(tf.identity(value), name=w.path, trainable=False)
                                      for w, value in zip(dcgan.generator.non_trainable_variables, non_trainable)]
        self.z_dim, self.y_dim, self.z_dist = dcgan.z_dim, dcgan.y_dim, dcgan.z_dist
        self.class_names = list(class_names) or digit_names(self.y_dim)
        self.constants = {"z_dim": dcgan.z_dim, "y_dim": dcgan.y_dim, "step": step,
                          "height": dcgan.generator.output_height, "width": dcgan.generator.output_width,
                          "channels": dcgan.generator.c_dim}
        label = tf.TensorSpec([None], tf.int32, name="label")
        seed = tf.TensorSpec([None], tf.int64, name="seed")
        z = tf.TensorSpec([None, dcgan.z_dim], tf.float32, name="z")
        if self.y_dim:
            self.serve = tf.function(self._serve, input_signature=[z, label])
            self.generate = tf.function(self._generate, input_signature=[label, seed])
            self.generate_png = tf.function(self._generate_png, input_signature=[label, seed])
        else:
            self.serve = tf.function(lambda z: self._serve(z, None), input_signature=[z])
            self.generate = tf.function(lambda seed: self._generate(None, seed), input_signature=[seed])
            self.generate_png = tf.function(lambda seed: self._generate_png(None, seed), input_signature=[seed])
        self.config = tf.function(self._config, input_signature=[])

    def sample(self, z, label):
        weights = self.trainable_weights, self.non_trainable_weights
        if self._in_float32 is None:
            return self._sample(z, label, weights)

        def in_float32():
            with self._in_float32():
                return self._sample(z, label, weights)
        return tf.cond(tf.shape(z)[0] < FLOAT32_BELOW, in_float32, lambda: self._sample(z, label, weights))

    def checked(self, label, other):
        """label (None when unconditional) and the other input, passed on only once they make a valid request."""
        y_dim, checks = self.y_dim, []
        if label is not None:
            checks += [
                tf.debugging.assert_equal(tf.shape(other)[0], tf.shape(label)[0],
                                          message="every input must have the same batch size as label"),
                tf.debugging.assert_non_negative(label, message=f"label must be in 0..{y_dim - 1}"),
                tf.debugging.assert_less(label, y_dim, message=f"label must be in 0..{y_dim - 1}"),
            ]
        if other.dtype == tf.float32:
            checks.append(tf.debugging.assert_equal(tf.shape(other)[1:], [self.z_dim],
                                                    message=f"z must have shape [batch, {self.z_dim}]"))
        with tf.control_dependencies(checks):
            return (None if label is None else tf.identity(label)), tf.identity(other)

    def _serve(self, z, label):
        label, z = self.checked(label, z)
        return {"images": self.sample(z, label)}

    def _generate(self, label, seed):
        label, seed = self.checked(label, seed)
        return {"images": self.sample(z_from_seeds(seed, self.z_dim, self.z_dist), label)}

    def _generate_png(self, label, seed):
        images = tf.cast(tf.round(tf.clip_by_value(self._generate(label, seed)["images"], 0.0, 1.0) * 255.0), tf.uint8)
        return {"png_bytes": tf.map_fn(tf.io.encode_png, images, fn_output_signature=tf.string)}

    def _config(self):
        constants = {k: tf.constant(v, tf.int64) for k, v in self.constants.items()}
        return {**constants, "z_dist": tf.constant(self.z_dist),
                "class_names": tf.constant(self.class_names, tf.string, shape=[len(self.class_names)])}


def export_savedmodel(dcgan, path, step=0, class_names=()):
    """Writes a SavedModel at path (TF Serving's <base>/<version> layout), published only when complete.

    Its assets/config.json repeats what the config signature returns, for readers without TF.
    """
    module = ServingModule(dcgan, step, class_names)
    tmp = path + ".tmp"
    if tf.io.gfile.exists(tmp):
        tf.io.gfile.rmtree(tmp)
    with tempfile.TemporaryDirectory() as scratch:
        config_path = os.path.join(scratch, "config.json")
        save_json({**module.constants, "z_dist": module.z_dist, "class_names": module.class_names}, config_path)
        module.config_file = tf.saved_model.Asset(config_path)
        signatures = {"serving_default": module.serve, "generate": module.generate,
                      "generate_png": module.generate_png, "config": module.config}
        try:
            tf.saved_model.save(module, tmp, signatures=signatures)
        except BaseException:  # a full disk keeps no partial export
            if tf.io.gfile.exists(tmp):
                tf.io.gfile.rmtree(tmp)
            raise
    if tf.io.gfile.exists(path):
        tf.io.gfile.rmtree(path)
    tf.io.gfile.rename(tmp, path)
    return path


class ExportedGenerator:
    """A SavedModel written by --export, with the attributes generate() needs."""

    def __init__(self, path):
        try:
            self.module = tf.saved_model.load(path)
        except (OSError, ValueError, tf.errors.OpError) as e:
            raise ValueError(f"{path} is not a SavedModel written by --export: {first_line(e)}") from None
        if not hasattr(self.module, "config"):
            raise ValueError(f"{path} is a SavedModel, but not one written by --export (no config signature)")
        config = {k: v.numpy() for k, v in self.module.config().items()}
        self.z_dim, self.y_dim, self.step = int(config["z_dim"]), int(config["y_dim"]), int(config["step"])
        self.z_dist = config["z_dist"].decode()
        # Exports from before class names were stored are MNIST-like: their classes are the digits.
        names = [name.decode() for name in config.get("class_names", [])]
        self.class_names = names or digit_names(self.y_dim)

    def sample(self, z, label=None):
        z = tf.convert_to_tensor(z, tf.float32)
        if label is None:
            return self.module.serve(z)["images"]
        return self.module.serve(z, tf.convert_to_tensor(label, tf.int32))["images"]


# Images per generator call in generate(): batch 1000 runs near the machine's matmul speed, and memory
# stays bounded whatever the number asked for.
GENERATE_CHUNK = 1000


def generate(model, labels, n=1, seed=0, z=None):
    """uint8 images [len(labels), n, H, W, C]: n per label, image j of every label from the same z;
    for an unconditional model labels is None and the result [1, n, H, W, C].

    model is a DCGAN or an ExportedGenerator. Image j uses seed + j (the z that the SavedModel's
    generate signature draws for that seed), unless z [n, z_dim] is given. Drawn about GENERATE_CHUNK
    images at a time; more than fits in memory is refused after the first of them.
    """
    if (labels is None) != (model.y_dim == 0):
        raise ValueError("this model is conditional: give labels" if model.y_dim else
                         "this model is unconditional: it takes no labels")
    if labels is not None:
        labels = np.asarray(labels, np.int32).reshape(-1)
        if labels.size == 0 or labels.min() < 0 or labels.max() >= model.y_dim:
            raise ValueError(f"labels must be a non-empty list of integers in 0..{model.y_dim - 1}")
    if z is not None:
        z = np.asarray(z, np.float32)
        if z.shape != (n, model.z_dim):
            raise ValueError(f"z must have shape ({n}, {model.z_dim}), not {z.shape}")
    rows = 1 if labels is None else len(labels)
    step = max(1, GENERATE_CHUNK // rows)
    chunks = []
    for start in range(0, n, step):
        seeds = seed + np.arange(start, min(n, start + step), dtype=np.int64)
        chunk_z = z[start:start + step] if z is not None else z_from_seeds(seeds, model.z_dim, model.z_dist)
        images = model.sample(np.tile(chunk_z, (rows, 1)), None if labels is None else np.repeat(labels, len(seeds)))
        chunks.append(to_uint8(images).reshape(rows, len(seeds), *images.shape[1:]))
        if start == 0:  # the images, and the grid or copies made of them
            check_memory(2 * rows * n * chunks[0][0, 0].nbytes, f"{rows * n} images need",
                         "ask for fewer (--n_per_label, --eval_n)")
    return np.concatenate(chunks, axis=1)


def load_savedmodel(path):
    try:
        return ExportedGenerator(path)
    except ValueError as e:
        raise DCGANError(str(e)) from None


def export(dcgan, folder, class_names=()):
    """Exports the DCGAN's sampling weights to folder/<its step>/; returns that path."""
    step = dcgan.trained_steps()
    path = os.path.join(folder, str(step))
    with tf_writing(f"the export {path}"):
        export_savedmodel(dcgan, path, step, class_names)
    print(f"Exported SavedModel to {path}")
    return path


def current_export(dcgan, folder, class_names=()):
    """The export in folder of the DCGAN's step, loaded, and its path: written if there is none yet, or
    again if the one there does not load (damaged since)."""
    path = os.path.join(folder, str(dcgan.trained_steps()))
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        try:
            return load_savedmodel(path), path
        except DCGANError as e:
            print(f"Warning: {e}; exporting it again", file=sys.stderr)
    path = export(dcgan, folder, class_names)
    return load_savedmodel(path), path


def write_generated(model, labels, names, folder, n=8, seed=None, save_individual=False):
    """--generate: one grid in folder (a column per label, a row per seed; an unconditional model's
    images in rows of 8) and, if save_individual, one PNG per image. labels: class indices (None for an
    unconditional model), names the model's classes; seed: that of the first row (default: random)."""
    seed = seed if seed is not None else random.SystemRandom().randrange(2 ** 31)
    images = generate(model, labels, n=n, seed=seed)
    shown = [names[k] for k in labels] if labels else []
    stem = f"generate_{name_of(shown) + '_' if shown else ''}seed{seed}"
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, stem + ".png")
    if labels:
        grid = label_columns(images)
    else:
        columns = min(n, COLUMNS)
        grid = make_grid(padded(images[0], columns), -(-n // columns), columns)
    save_image(grid, path)
    print(f"Wrote {path} ({f'{len(labels)} labels x ' if labels else ''}{n} images, seed {seed})")
    if save_individual:
        individual = os.path.join(folder, stem)
        os.makedirs(individual, exist_ok=True)
        for name, row in zip(shown or [None], images):
            for j, image in enumerate(row):
                prefix = f"label{name_of([name])}_" if name is not None else ""
                save_image(image, os.path.join(individual, f"{prefix}seed{seed + j}.png"))
        print(f"Wrote {images.shape[0] * images.shape[1]} images to {individual}")
