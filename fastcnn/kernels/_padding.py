"""The zero-padded input a convolution reads, for the CPU and CUDA kernels alike."""


def padded_extent(size, out_size, stride, dilation, kernel, pad_before):
    """Rows (or columns) of the zero-padded input that a convolution reads: enough
    for every window, and at least the input itself."""
    needed = (out_size - 1) * stride + dilation * (kernel - 1) + 1
    return max(needed, pad_before + size)


def padded_hw(x_shape, y_shape, w_shape, pad_t, pad_l, sh, sw, dh, dw):
    """``(Hp, Wp)`` of the padded input of a convolution with these shapes (NCHW
    input and output, OIHW weights), top padding ``pad_t`` and left ``pad_l``."""
    return (padded_extent(x_shape[2], y_shape[2], sh, dh, w_shape[2], pad_t),
            padded_extent(x_shape[3], y_shape[3], sw, dw, w_shape[3], pad_l))
