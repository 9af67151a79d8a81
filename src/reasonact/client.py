"""``from reasonact.client import PolicyClient`` -- see :mod:`reasonact.serve.client`."""

from .serve.client import PolicyClient, PolicyServerError

__all__ = ["PolicyClient", "PolicyServerError"]
