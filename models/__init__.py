"""The zoo: importing this package registers every builder and recipe.

In a checkout it is `models`; pip-installed it is `anpvs_tf.zoo`.
"""

from . import lenet5_caffe  # noqa: F401
from . import resnet18  # noqa: F401
from . import vgg16  # noqa: F401
