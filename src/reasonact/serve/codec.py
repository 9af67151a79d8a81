"""msgpack with numpy arrays, in the wire format openpi uses:
``{b"__ndarray__": True, b"data": raw bytes, b"dtype": dtype.str, b"shape": [...]}``, and numpy scalars as
``{b"__npgeneric__": True, b"data": value, b"dtype": dtype.str}`` (read; we send scalars as plain numbers)."""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np


class CodecError(ValueError):
    pass


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "OVU":
            raise CodecError(f"cannot send arrays of dtype {obj.dtype}")
        return {b"__ndarray__": True, b"data": np.ascontiguousarray(obj).tobytes(), b"dtype": obj.dtype.str,
                b"shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot encode {type(obj).__name__}")


def _hook(obj: dict) -> Any:
    if b"__ndarray__" in obj:
        try:
            dtype = np.dtype(obj[b"dtype"])
            if dtype.kind in "OVU":
                raise CodecError(f"arrays of dtype {dtype} are not accepted")
            shape = tuple(int(s) for s in obj[b"shape"])
            return np.frombuffer(obj[b"data"], dtype=dtype).reshape(shape)
        except CodecError:
            raise
        except Exception as e:
            raise CodecError(f"malformed array: {e}") from e
    if b"__npgeneric__" in obj:
        try:
            dtype = np.dtype(obj[b"dtype"])
            if dtype.kind not in "biuf":
                raise CodecError(f"numpy scalars of dtype {dtype} are not accepted")
            return dtype.type(obj[b"data"])
        except CodecError:
            raise
        except Exception as e:
            raise CodecError(f"malformed numpy scalar: {e}") from e
    return obj


def packb(obj: Any) -> bytes:
    return msgpack.packb(obj, default=_default, use_bin_type=True)


def unpackb(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, object_hook=_hook, raw=False, strict_map_key=False)
    except CodecError:
        raise
    except Exception as e:
        raise CodecError(f"could not decode the message as msgpack: {e}") from e
