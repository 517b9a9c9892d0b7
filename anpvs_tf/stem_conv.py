"""A first-layer convolution whose gradient to the image is fast on CPU.

PGD takes the gradient of the loss with respect to the image at every step,
so the first convolution's backprop-to-input runs 20-40 times per training
or evaluation batch. For a convolution with 1-4 input channels (a network's
stem: 1 for MNIST, 3 for CIFAR) TensorFlow's CPU kernel for it is slow:
3.2x slower than an XLA-compiled matmul + col2im on LeNet's conv1, 2x on
VGG's first conv (batch 64, bench/stem_gradient.py). With more input
channels TF's kernel wins, so only stems use this.
"""

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


@keras.saving.register_keras_serializable(package="anpvs_tf")
class StemConv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D` with a faster gradient to its input on CPU.

    Same weights, config and forward computation as Conv2D; only the
    backprop to the input changes (see the module docstring), and only
    where it pays: stride 1, no dilation, no groups, channels_last, at most
    MAX_INPUT_CHANNELS input channels and no GPU (cuDNN's kernel is fast).
    Elsewhere it is exactly Conv2D.
    """

    def build(self, input_shape):
        super().build(input_shape)
        self._fast_input_gradient = (
            input_shape[-1] is not None
            and input_shape[-1] <= MAX_INPUT_CHANNELS
            and tuple(self.strides) == (1, 1)
            and tuple(self.dilation_rate) == (1, 1)
            and self.groups == 1
            and self.data_format == "channels_last"
            and self.padding in ("valid", "same")
            and not tf.config.list_logical_devices("GPU")
        )

    def convolution_op(self, inputs, kernel):
        if not self._fast_input_gradient:
            return super().convolution_op(inputs, kernel)
        padding = self.padding.upper()
        kernel_height, kernel_width = self.kernel_size
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
