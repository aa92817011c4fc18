"""The same BYOL training step in PyTorch eager, for the benchmark's comparison.

What an idiomatic PyTorch BYOL does, with byol-ref's ``paper`` layout and official conventions:
``nn.Linear -> nn.BatchNorm1d -> nn.ReLU`` blocks (encoder: two blocks; projector and predictor:
one block then a bias-free Linear), the network called once per view (so batch norm takes
per-view statistics, as the official code), the target under ``torch.no_grad()``, the loss
``sum over both directions of ||n(p) - n(z)||^2`` averaged over the batch, ``loss.backward()``,
the official LARS (``u = g + wd p``, ``r = eta ||p|| / ||u||``, heavy-ball momentum, biases and
norm parameters excluded) and the EMA ``t <- tau t + (1 - tau) o``, all with in-place tensor ops.

The weights are copied from a byol-ref network (``weights_from``), so both implementations run the
very same step from the same point; the benchmark compares their first updates (``step_difference``)
before it times them.

This module imports torch; byol-ref never does (the benchmark imports this file only when torch
is installed).
"""
from __future__ import annotations

import torch
from torch import nn


def _block(d_in, d_out):
    return [nn.Linear(d_in, d_out), nn.BatchNorm1d(d_out, eps=1e-5, momentum=0.1), nn.ReLU(inplace=True)]


class Net(nn.Module):
    """encoder -> projector (-> predictor), byol-ref's paper layout."""

    def __init__(self, d, h, ph, p, q, *, predictor: bool):
        super().__init__()
        self.encoder = nn.Sequential(*_block(d, h), *_block(h, h))
        self.projector = nn.Sequential(*_block(h, ph), nn.Linear(ph, p, bias=False))
        self.predictor = nn.Sequential(*_block(p, q), nn.Linear(q, p, bias=False)) if predictor else None

    def forward(self, x):
        z = self.projector(self.encoder(x))
        return self.predictor(z) if self.predictor is not None else z


# byol-ref key -> (torch module path, attribute, transpose?)
def _mapping(net: Net):
    out = {}
    for part in ("encoder", "projector", "predictor"):
        seq = getattr(net, part)
        if seq is None:
            continue
        fc, norm = 0, 0
        for mod in seq:
            if isinstance(mod, nn.Linear):
                fc += 1
                out[f"{part}.fc{fc}.weight"] = (mod.weight, True)
                if mod.bias is not None:
                    out[f"{part}.fc{fc}.bias"] = (mod.bias, False)
            elif isinstance(mod, nn.BatchNorm1d):
                norm += 1
                out[f"{part}.norm{norm}.gamma"] = (mod.weight, False)
                out[f"{part}.norm{norm}.beta"] = (mod.bias, False)
    return out


def weights_from(net: Net, params: dict, device) -> list:
    """Copy byol-ref params (host NumPy arrays, weights stored (in, out)) into ``net``.

    Returns the list of (name, tensor) in byol-ref's key order (for the optimiser's exclusions).
    """
    mapping = _mapping(net)
    missing = sorted(set(mapping) - set(params))
    if missing:
        raise ValueError(f"byol-ref params lack {missing}")
    named = []
    with torch.no_grad():
        for key, (tensor, transpose) in mapping.items():
            value = torch.as_tensor(params[key], device=device)
            tensor.copy_(value.T if transpose else value)
            named.append((key, tensor))
    return named


def _excluded(name: str) -> bool:
    parts = name.split(".")
    return parts[-1] in ("bias", "b") or any("norm" in part for part in parts)


class TorchStep:
    """One BYOL training step (both views, both networks, symmetric loss, backward, LARS, EMA)."""

    def __init__(self, dims, online_params: dict, target_params: dict, *, device="cpu",
                 lr=0.2, momentum=0.9, weight_decay=1e-6, eta=1e-3, tau=0.99):
        d, h, ph, p, q = dims
        self.device = torch.device(device)
        self.online = Net(d, h, ph, p, q, predictor=True).to(self.device)
        self.target = Net(d, h, ph, p, q, predictor=False).to(self.device)
        self.named = weights_from(self.online, online_params, self.device)
        self.target_named = weights_from(self.target, target_params, self.device)
        online_by_name = dict(self.named)
        self.ema_pairs = [(t, online_by_name[k]) for k, t in self.target_named]
        for t in self.target.parameters():
            t.requires_grad_(False)
        self.momentum_buffers = [torch.zeros_like(t) for _, t in self.named]
        self.lr, self.mom, self.wd, self.eta, self.tau = lr, momentum, weight_decay, eta, tau

    @staticmethod
    def _loss(p, z):
        # official regression loss: ||n(p) - n(z)||^2 with n(x) = x * rsqrt(max(sum x^2, 1e-12))
        n_p = p * torch.rsqrt(torch.clamp((p * p).sum(-1, keepdim=True), min=1e-12))
        n_z = z * torch.rsqrt(torch.clamp((z * z).sum(-1, keepdim=True), min=1e-12))
        return ((n_p - n_z) ** 2).sum(-1)

    def loss(self, v1, v2):
        p1, p2 = self.online(v1), self.online(v2)
        with torch.no_grad():
            z1, z2 = self.target(v1), self.target(v2)
        return (self._loss(p1, z2) + self._loss(p2, z1)).mean()

    def step(self, v1, v2):
        for _, t in self.named:
            t.grad = None
        loss = self.loss(v1, v2)
        loss.backward()
        with torch.no_grad():
            for (name, w), m in zip(self.named, self.momentum_buffers):  # official LARS
                g = w.grad
                if _excluded(name):
                    u = g
                else:
                    u = g.add(w, alpha=self.wd)
                    w_norm, u_norm = torch.linalg.vector_norm(w), torch.linalg.vector_norm(u)
                    ratio = torch.where((w_norm > 0) & (u_norm > 0), self.eta * w_norm / u_norm,
                                        torch.ones_like(w_norm))
                    u.mul_(ratio)
                m.mul_(self.mom).add_(u)
                w.sub_(m, alpha=self.lr)
            for t, o in self.ema_pairs:  # EMA: t <- tau t + (1 - tau) o
                t.mul_(self.tau).add_(o, alpha=1 - self.tau)
        return loss

