"""PyTorch autograd as an oracle for gpubp's layer networks (a comparison reference only).

:func:`torch_loss_and_grads` runs the same layers (Linear, the activation, Dropout with the mask
gpubp drew, BatchNorm1d's functional form on copies of the running statistics) in float64 and
returns the loss, the gradients in gpubp's order (one tuple per layer with parameters) and the
running statistics after the pass.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from gpubp.layers import BatchNorm, Dense, Dropout


def _act(torch: Any, name: Optional[str], z: Any) -> Any:
    F = torch.nn.functional
    table = {
        None: lambda v: v, "identity": lambda v: v, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": F.relu,
        "leaky_relu": lambda v: F.leaky_relu(v, 0.01), "elu": F.elu, "softplus": F.softplus,
        "gelu": F.gelu, "gelu_tanh": lambda v: F.gelu(v, approximate="tanh"), "silu": F.silu,
        "softmax": lambda v: torch.softmax(v, dim=1),
    }
    return table[name](z)


def torch_loss_and_grads(net: Any, X: Any, Y: Any, masks: Sequence[Optional[np.ndarray]] = (),
                         training: bool = True) -> Tuple[float, List[Tuple[Any, ...]], List[Tuple[Any, Any]], Any]:
    """(C, gradients, [(running_mean, running_var) after the pass per BatchNorm], A^(L)).

    ``masks``: per Dropout layer in order, the mask m / (1 - p) to multiply by (training only).
    """
    import torch

    to_np = net.backend.to_numpy
    F = torch.nn.functional
    x = torch.tensor(np.asarray(to_np(net.backend.asarray(X)), dtype=np.float64))
    tensors: List[Tuple[Any, ...]] = []
    stats: List[Tuple[Any, Any]] = []
    masks = list(masks)
    z = None
    for layer in net.layers[1:]:
        if isinstance(layer, Dense):
            W = torch.tensor(np.asarray(to_np(layer.W), dtype=np.float64), requires_grad=True)
            b = None if layer.b is None else torch.tensor(np.asarray(to_np(layer.b), dtype=np.float64),
                                                           requires_grad=True)
            tensors.append((W, b))
            z = x @ W.T + (b if b is not None else 0.0)
            x = _act(torch, None if layer.activation is None else layer.activation.name, z)
        elif isinstance(layer, Dropout):
            mask = masks.pop(0) if masks else None
            if training and layer.p > 0:
                x = x * torch.tensor(np.asarray(mask, dtype=np.float64))
        elif isinstance(layer, BatchNorm):
            g = torch.tensor(np.asarray(to_np(layer.gamma), dtype=np.float64), requires_grad=True)
            beta = torch.tensor(np.asarray(to_np(layer.beta), dtype=np.float64), requires_grad=True)
            rm = torch.tensor(np.asarray(to_np(layer.running_mean), dtype=np.float64))
            rv = torch.tensor(np.asarray(to_np(layer.running_var), dtype=np.float64))
            tensors.append((g, beta))
            x = F.batch_norm(x, rm, rv, weight=g, bias=beta, training=training, momentum=layer.momentum, eps=layer.eps)
            stats.append((rm, rv))
            x = _act(torch, None if layer.activation is None else layer.activation.name, x)
        else:
            raise TypeError(type(layer).__name__)
    loss = net.loss.name
    a = x
    Yt = torch.tensor(np.asarray(to_np(net.backend.asarray(Y))))
    if loss == "sse":
        C = ((a - Yt) ** 2).sum(dim=1).mean()
    elif loss == "mse":
        C = ((a - Yt) ** 2).mean(dim=1).mean()
    elif loss == "cross_entropy":
        C = F.cross_entropy(z, Yt.long()) if Yt.ndim == 1 else -(Yt * torch.log_softmax(z, dim=1)).sum(dim=1).mean()
    else:
        C = F.binary_cross_entropy_with_logits(z, Yt.double(), reduction="none").sum(dim=1).mean()
    C.backward()
    grads = [tuple(None if t is None else t.grad.numpy() for t in pair) for pair in tensors]
    return float(C.detach()), grads, [(rm.numpy(), rv.numpy()) for rm, rv in stats], a.detach().numpy()

