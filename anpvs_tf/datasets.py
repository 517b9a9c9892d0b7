"""What the datasets are (names, image shapes, classes, sources): the facts
settings and builders need, without loading anything."""

DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100")
SOURCES = ("embedded", "idx", "tfds")
# IDX files hold 28x28 grayscale images: the MNIST family only.
IDX_DATASETS = ("mnist", "fashion_mnist")

# Image shape (H, W, C) and number of classes of every dataset.
DATASET_INFO = {
    "mnist": ((28, 28, 1), 10),
    "fashion_mnist": ((28, 28, 1), 10),
    "cifar10": ((32, 32, 3), 10),
    "cifar100": ((32, 32, 3), 100),
}
