"""The zoo: importing this package registers every builder and recipe."""

from models import lenet5_caffe  # noqa: F401
