"""A LeNet-5-class network learns the bundled MNIST sample: the accuracy is gated, as tinygrad gates it.

Issue 24's target is 98.5% on the sample's test set with ``fastnet train --model lenet`` and its
defaults; this test is the library's floor under it: five epochs of SGD with momentum and a cosine
schedule on the 8,000 training images reach 97.65% (seeds 1 and 2: 97.45% and 97.4%), and the test
asserts 97%. About 10 s on an idle 2-core machine.
"""
import numpy as np

import fastnet as fn


def lenet(backend="numba"):
    return fn.Sequential(
        fn.Conv2D(1, 6, 5, padding=2, input_shape=(1, 28, 28)), fn.ReLU(), fn.MaxPool2D(2),
        fn.Conv2D(6, 16, 5), fn.ReLU(), fn.MaxPool2D(2), fn.Flatten(),
        fn.Dense(400, 120), fn.ReLU(), fn.Dense(120, 84), fn.ReLU(), fn.Dense(84, 10),
        loss=fn.SoftmaxCrossEntropy(), backend=backend, seed=0)


def test_lenet_reaches_97_percent_on_the_bundled_sample():
    train, test = fn.datasets.load("mnist-sample")
    model = lenet()
    epochs = 5
    history = model.fit(train.x, train.y, epochs=epochs, batch_size=32,
                        optimizer=fn.SGD(lr=0.03, momentum=0.9, schedule=fn.CosineLR(epochs)), progress=False)
    losses = history.history["loss"]
    assert np.all(np.diff(losses) < 0), f"the training loss should fall every epoch: {losses}"
    result = model.evaluate(test.x, test.y)
    assert result["accuracy"] >= 0.97, result
    # flat rows (n, 784) are the images the model was given input_shape for
    np.testing.assert_array_equal(model.predict(test.x[:50].reshape(50, 1, 28, 28)), model.predict(test.x[:50]))
