"""Reading a saved Keras model file, with a message that says what is wrong.

Light at import (no Keras, no TensorFlow): the command line imports it first.
"""

import os
import zipfile

_ZIP = (b"PK\x03\x04", b"PK\x05\x06")
_HDF5 = b"\x89HDF\r\n\x1a\n"


def load_model_file(path, what):
    """The Keras model saved in `path`, uncompiled.

    Args:
        path: a `.keras` (or legacy `.h5`) file.
        what: the argument that gave the path, named in the message.

    Returns:
        The loaded `keras.Model`.

    Raises:
        ModelFileError: the file is missing, empty, truncated, of another
            format, or Keras cannot load it (e.g. an unregistered custom class).

    Example:

    >>> model = load_model_file("saved_models/resnet20_cifar10_dense.keras", "--dense")
    """
    from keras_relaxprune.errors import ModelFileError

    problem = file_problem(path)
    if problem:
        raise ModelFileError(f"{what} '{path}' {problem}.")
    import keras

    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:
        detail = " ".join(str(error).split()) or type(error).__name__
        if len(detail) > 300:
            detail = detail[:297] + "..."
        hint = ""
        if "register_keras_serializable" in detail or "Could not locate" in detail:
            hint = " It uses a custom class: import the module that registers it."
        raise ModelFileError(
            f"{what} '{path}' could not be loaded as a Keras model "
            f"({type(error).__name__}: {detail}).{hint}"
        ) from error


def file_problem(path):
    """What makes `path` unreadable as a `.keras`/`.h5` file, or None."""
    if not os.path.exists(path):
        return "does not exist"
    if os.path.isdir(path):
        return (
            "is a directory; pass a .keras file written by model.save('model.keras') "
            "(a SavedModel directory cannot be loaded as a Keras model)"
        )
    size = os.path.getsize(path)
    if size == 0:
        return "is empty (0 bytes): the save did not finish, or it is not a model"
    with open(path, "rb") as file:
        head = file.read(8)
    extension = os.path.splitext(path)[1].lower()
    if extension == ".keras":
        if not head.startswith(_ZIP):
            return (
                f"is not a .keras file: a .keras file is a zip archive, this one "
                f"({size} bytes) starts with {head!r}"
            )
        try:
            with zipfile.ZipFile(path) as archive:
                if "config.json" not in archive.namelist():
                    return "is a zip archive but not a saved Keras model (no config.json)"
        except zipfile.BadZipFile:
            return (
                f"is truncated or corrupt: it starts as a zip archive but its "
                f"directory is missing ({size} bytes); save or copy it again"
            )
        return None
    if extension in (".h5", ".hdf5"):
        if not head.startswith(_HDF5):
            return (
                f"is not an HDF5 file (the legacy .h5 format): its {size} bytes start with {head!r}"
            )
        return None
    return (
        f"has the extension '{extension}'; pass a .keras file (or a legacy .h5 "
        "file) written by model.save"
    )
