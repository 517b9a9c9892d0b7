"""A first-layer convolution whose gradient to the image is fast on CPU.

PGD takes the gradient of the loss with respect to the image at every step,
so the first convolution's backprop-to-input runs 20-40 times per training
or evaluation batch. For a convolution with 1-4 input channels (a network's
stem: 1 for MNIST, 3 for CIFAR) TensorFlow's CPU kernel for it is slow:
3.2x slower than an XLA-compiled matmul + col2im on LeNet's conv1, 2x on
VGG's first conv (batch 64, bench/stem_gradient.py). With more input
channels TF's kernel wins, so only stems use this.
"""

import functools

import keras
import tensorflow as tf

MAX_INPUT_CHANNELS = 4


@tf.function(jit_compile=True)
def _input_gradient(grad_output, kernel, top, left, height, width):
    """dL/dx of a stride-1 convolution, as matmul + col2im.

    cols[b, h, w, i, j, c] = sum_o dL/dy[b, h, w, o] kernel[i, j, c, o] is
    what output position (h, w) sends back to input (h + i, w + j); adding
    the shifted planes gives the full correlation, of which the input's
    window starts at the padding (top, left). XLA fuses the shifted adds.
    """
    kernel_height, kernel_width = kernel.shape[0], kernel.shape[1]
    cols = tf.einsum("bhwo,ijco->bhwijc", grad_output, kernel)
    planes = [
        tf.pad(cols[:, :, :, i, j, :],
               [[0, 0], [i, kernel_height - 1 - i],
                [j, kernel_width - 1 - j], [0, 0]])
        for i in range(kernel_height)
        for j in range(kernel_width)
    ]
    full = tf.add_n(planes)
    return full[:, top:top + height, left:left + width, :]


def _same_padding(size):
    """TensorFlow's SAME padding before the data for a stride-1 window."""
    return (size - 1) // 2


def _applies(layer):
    """Whether the fast gradient applies to this built Conv2D (and pays)."""
    return (
        isinstance(layer, keras.layers.Conv2D)
        and layer.built
        and layer.kernel.shape[-2] <= MAX_INPUT_CHANNELS
        and tuple(layer.strides) == (1, 1)
        and tuple(layer.dilation_rate) == (1, 1)
        and layer.groups == 1
        and layer.data_format == "channels_last"
        and layer.padding in ("valid", "same")
        and not tf.config.list_logical_devices("GPU")
    )


def fast_stem_gradient(layer):
    """Gives a built Conv2D stem the fast gradient to its input.

    Same weights, config, saved files and forward computation as before:
    only this layer object's backprop to the input changes (see the module
    docstring), and only where it pays: stride 1, no dilation, no groups,
    channels_last, at most MAX_INPUT_CHANNELS input channels and no GPU
    (cuDNN's kernel is fast). A subclass would have been cleaner, but Keras
    names weight-file entries after the layer class: existing checkpoints
    and exports would no longer load.

    Returns:
        Whether the layer now uses it (`layer._fast_input_gradient`).
    """
    layer._fast_input_gradient = _applies(layer)
    if layer._fast_input_gradient:
        layer.convolution_op = functools.partial(_fast_convolution, layer)
    return layer._fast_input_gradient


def _fast_convolution(layer, inputs, kernel):
    padding = layer.padding.upper()
    kernel_height, kernel_width = layer.kernel_size
    top = _same_padding(kernel_height) if padding == "SAME" else 0
    left = _same_padding(kernel_width) if padding == "SAME" else 0

    @tf.custom_gradient
    def convolve(images, kernel):
        outputs = tf.nn.conv2d(images, kernel, 1, padding)

        def gradient(grad_output):
            grad_images = _input_gradient(
                grad_output, kernel, top, left,
                images.shape[1], images.shape[2],
            )
            grad_kernel = tf.raw_ops.Conv2DBackpropFilter(
                input=images,
                filter_sizes=tf.shape(kernel),
                out_backprop=grad_output,
                strides=[1, 1, 1, 1],
                padding=padding,
            )
            return grad_images, grad_kernel

        return outputs, gradient

    # A tensor, not the variable: custom_gradient then hands the kernel's
    # gradient back through the read, as for any op.
    return convolve(inputs, tf.convert_to_tensor(kernel))
