"""Runs in .venv-compat, beside openpi's own client package: one step of openpi's LIBERO example
(examples/libero/main.py) against a reasonact server holding a LIBERO policy. From robosuite's raw observation
(the keys LIBERO's OffScreenRenderEnv returns) it builds the request that example builds: both images turned 180
degrees and resized with padding to 224 px by openpi_client.image_tools, the state as the end effector's
position, the hand's axis-angle and the two finger joints. It sends the episode_start and episode_end messages
of openpi's newer client around the inference, and writes the request and the reply to OUT.npz.

    python openpi_libero_check.py WS_URL RAW.npz OUT.npz
"""

import math
import sys

import numpy as np
from openpi_client import image_tools, msgpack_numpy, websocket_client_policy


def axis_angle(quat: np.ndarray) -> np.ndarray:
    """robosuite's (x, y, z, w) quaternion -> a rotation vector, the way the example computes it."""
    w = min(max(float(quat[3]), -1.0), 1.0)
    s = math.sqrt(1.0 - w * w)
    return np.zeros(3) if math.isclose(s, 0.0) else np.asarray(quat[:3]) * 2.0 * math.acos(w) / s


def image(raw: np.ndarray) -> np.ndarray:
    turned = np.ascontiguousarray(raw[::-1, ::-1])
    return image_tools.convert_to_uint8(image_tools.resize_with_pad(turned, 224, 224))


url, raw_file, out_file = sys.argv[1:4]
raw = np.load(raw_file)
element = {
    "observation/image": image(raw["agentview_image"]),
    "observation/wrist_image": image(raw["robot0_eye_in_hand_image"]),
    "observation/state": np.concatenate([raw["robot0_eef_pos"], axis_angle(raw["robot0_eef_quat"]),
                                         raw["robot0_gripper_qpos"]]),
    "prompt": str(raw["prompt"]),
}
host, port = url.removeprefix("ws://").rsplit(":", 1)
policy = websocket_client_policy.WebsocketClientPolicy(host, int(port))
packer = msgpack_numpy.Packer()


def control(message: dict) -> dict:
    """A control message as openpi's newer client sends it (0.1.2 has no method for it): packed, on the socket."""
    policy._ws.send(packer.pack(message))
    return msgpack_numpy.unpackb(policy._ws.recv())


start = control({"__ctrl__": "episode_start", "__experiment__": "libero_spatial", "__task__": element["prompt"],
                 "__episode_id__": 0})
reply = policy.infer(element)
end = control({"__ctrl__": "episode_end", "__success__": False})
np.savez(out_file, image=element["observation/image"], wrist_image=element["observation/wrist_image"],
         state=element["observation/state"], prompt=element["prompt"], actions=reply["actions"],
         acks=np.array([start["__ack__"], end["__ack__"]]))
