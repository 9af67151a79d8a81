"""Runs in .venv-compat, beside openpi's own client package: drives a reasonact server the way an openpi
robot does and prints what it saw as one JSON line (tests/test_compat.py asserts on it).

    python openpi_client_check.py WS_URL OBS.npz HORIZON
"""

import json
import sys
import urllib.request

import numpy as np
from openpi_client import action_chunk_broker, websocket_client_policy

url, obs_file, horizon = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = np.load(obs_file)
obs = {"observation/image": data["image"], "observation/wrist_image": data["wrist_image"],
       "observation/state": data["state"], "prompt": str(data["prompt"])}
host, port = url.removeprefix("ws://").rsplit(":", 1)
out = {}

policy = websocket_client_policy.WebsocketClientPolicy(host, int(port))
out["metadata_policy"] = policy.get_server_metadata()["policy"]
first = policy.infer(obs)
out["actions"] = first["actions"].tolist()
out["trace"] = first["trace"]
out["scalar_steps"] = policy.infer({**obs, "diffusion_steps": np.int64(2)})["nfe"]  # sent as __npgeneric__

try:
    policy.infer({k: v for k, v in obs.items() if k != "prompt"})
    out["error"] = None
except RuntimeError as e:  # openpi's client raises the text frame the server sends
    out["error"] = str(e)
out["after_error"] = policy.infer(obs)["actions"].tolist()  # the same connection still serves

broker = action_chunk_broker.ActionChunkBroker(policy, action_horizon=horizon)
steps = [broker.infer(obs) for _ in range(2 * horizon + 1)]
out["broker_actions"] = [s["actions"].tolist() for s in steps]
out["broker_trace_whole"] = all(s["trace"] == first["trace"] for s in steps)

health = urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=10)
out["healthz"] = [health.status, json.loads(health.read())["status"]]
print(json.dumps(out))
