"""The BatchNorm that follows a fully connected layer in the zoo's models.

On hosts with AVX-512, MXNet 1.9.1's oneDNN BatchNorm kills the process when, in
one process, a BatchNorm on a ``(N, C, 1, 1)`` input is followed by one on an
``(N, C)`` input with the same ``C`` (docs/platform.md). A fully connected layer
of the zoo produces ``(N, C)`` in its dense form (``nn.Dense``) and ``(N, C, 1, 1)``
in its lookup form (a convolution whose kernel covers the map, as AlexNet's fc6),
so a user running both in one process would meet exactly that sequence.

:class:`FlatBatchNorm` flattens its input first: in every form of every model the
BatchNorm operator after a fully connected layer sees the same ``(N, C)`` input,
and the crashing pair cannot occur. Its output stays ``(N, C)``: reshaping it back
to ``(N, C, 1, 1)`` in front of a convolution breaks MXNet 1.9.1's oneDNN BatchNorm
backward (``Check failed: !is_view``), so what follows it is fully connected.
Its parameters, their names and its arithmetic are those of ``nn.BatchNorm``:
:func:`lcnn_gluon.export.sparsify` folds it like any BatchNorm (and flattens).
"""
from mxnet.gluon import nn


class FlatBatchNorm(nn.BatchNorm):
    """``nn.BatchNorm`` over the features of the flattened input: ``(N, C, 1, 1)`` or
    ``(N, C)`` in, ``(N, C)`` out. Give ``in_channels`` so that another input shape fails."""

    flattens = True  # for export: the layer before it is flattened when this is folded into it

    def hybrid_forward(self, F, x, gamma, beta, running_mean, running_var):
        return super().hybrid_forward(F, F.flatten(x), gamma, beta, running_mean, running_var)
