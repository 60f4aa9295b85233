"""Validated ops on NumPy arrays, with torch.nn.functional's argument meanings.

Every op has a ``*_backward`` twin that returns the gradients of its inputs for an
upstream gradient ``dy``. This module validates; the kernels behind it do not.
"""

from .conv import conv2d, conv2d_backward

__all__ = ["conv2d", "conv2d_backward"]
