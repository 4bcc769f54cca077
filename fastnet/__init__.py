"""fastnet: neural-network training on the CPU with numba kernels, each with a NumPy twin.

    import fastnet as fn
    train, test = fn.datasets.load("mnist-sample")
    model = fn.Sequential(fn.Dense(784, 128), fn.Sigmoid(), fn.Dense(128, 10),
                          loss=fn.SoftmaxCrossEntropy(), seed=0)
    model.fit(train.x, train.y, epochs=5, optimizer=fn.SGD(lr=0.1, momentum=0.9))
"""
from fastnet._startup import check_address_space

check_address_space()
try:  # numba and numpy load large libraries: a tight ulimit -v fails here, reported in one line
    from fastnet import datasets
    from fastnet.callbacks import Callback, Checkpoint, EarlyStopping, History
    from fastnet.errors import (CheckpointError, ConfigError, DataError, DistributedError, DivergenceError, DTypeError,
                                FastnetError, InputError, ShapeError)
    from fastnet._interrupt import TrainingInterrupted
    from fastnet.gradcheck import gradcheck
    from fastnet.layers import (AvgPool2D, Conv2D, Dense, Dropout, Flatten, LeakyReLU, MaxPool2D, ReLU, Sigmoid,
                                Tanh)
    from fastnet.losses import MSE, BinaryCrossEntropy, SoftmaxCrossEntropy
    from fastnet.model import Sequential, load
    from fastnet.optimizers import SGD, Adam, CosineLR, ExponentialLR, StepLR
    from fastnet.threads import get_num_threads, set_num_threads
except (MemoryError, OSError, ImportError) as _error:
    from fastnet._startup import cannot_start

    cannot_start(_error)

from fastnet._version import __version__

__all__ = [
    "Adam", "AvgPool2D", "BinaryCrossEntropy", "Callback", "Checkpoint", "CheckpointError", "ConfigError", "Conv2D",
    "CosineLR", "DataError", "Dense", "DistributedError", "DivergenceError", "DTypeError", "Dropout",
    "EarlyStopping", "ExponentialLR", "FastnetError", "Flatten", "History", "InputError", "LeakyReLU", "MaxPool2D",
    "MSE", "ReLU", "SGD", "Sequential", "ShapeError", "Sigmoid", "SoftmaxCrossEntropy", "StepLR", "Tanh",
    "TrainingInterrupted", "datasets", "get_num_threads", "gradcheck", "load", "set_num_threads", "__version__",
]
