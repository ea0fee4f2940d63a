"""`--masks graphonomy`: foreground masks from Graphonomy's universal model, as LPD's preprocessing makes them
(../shared/reference/edn-latentpose.md §2.3 step 4; the shrubb/Graphonomy fork's
`exp/inference/inference_folder.py --tta 0.75,1.0,1.5,2.0` on the 256-px crops):

1. the RGB frame is resized to 256 x 256 (PIL's default filter, bicubic; a 256-px crop is unchanged) and
   mirrored (the flip input);
2. for each test-time scale, 1.0 first then 0.75, 1.5, 2.0: both are resized by PIL bilinear to int(256 s),
   mapped to [-1, 1] (x * 2 / 255 - 1) and put in BGR order; the network's 20 CIHP logits of the image and of
   the flip (its left/right classes swapped back, then mirrored back) are averaged; scales after the first are
   resized bilinear (align_corners) to the first's size and all are summed;
3. mask = 1 - softmax(summed logits)[background]: every class but the background is foreground (the whole
   person: hair, face, body, clothes); x 255, rounded to uint8, resized to the frame's size by cv2's default
   bilinear filter.

The weight file is user-placed (`universal_trained.pth` in the animbench weights folder; plumbing.weights). It
loads as the official `load_source_model` maps names ('module.' stripped, un-prefixed graph layers renamed
to their source_* names, other unknown keys ignored), but strictly: a tensor the network needs that the file
lacks, or with another shape, is an error (the official loader would leave it uninitialised).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from plumbing import weights
from plumbing.errors import AnimbenchError

GRAPHONOMY_FILE = weights.GRAPHONOMY_FILE  # declared in the manifest with the other weight files
TTA_SCALES = (1.0, 0.75, 1.5, 2.0)  # --tta 0.75,1.0,1.5,2.0 with 1.0 moved first, as the script does
INPUT_SIZE = 256
BACKEND = ("Graphonomy universal model (deeplab_xception_transfer_projection_savemem), TTA scales 1.0, 0.75, 1.5, "
           "2.0 with flips, mask = 1 - P(background) of the 20 CIHP classes")


def check_graphonomy() -> Path:
    """The weight file's path, checked by the weights manifest (one-line error naming the file and folder)."""
    return weights.locate(GRAPHONOMY_FILE)


def _rename(name: str) -> str:
    """load_source_model's key mapping (the savemem transfer model's variant)."""
    name = name.replace("module.", "")
    if "graph" in name and not any(k in name for k in ("source", "target", "fc_", "transpose_graph")):
        if "featuremap_2_graph" in name:
            return name.replace("featuremap_2_graph", "source_featuremap_2_graph")
        return name.replace("graph", "source_graph")
    return name


def load_graphonomy(path: str | Path, device: str = "cpu"):
    """A GraphonomyNet in eval mode with the file's weights; its width (div) is read from the file."""
    import torch

    from prep.masks.graphonomy_net import GraphonomyNet

    try:
        raw = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many classes for unreadable files
        raise AnimbenchError(f"weight file {path}: not a loadable state_dict ({' '.join(str(exc).split())[:200]})"
                             ) from None
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    state = {_rename(k): v for k, v in raw.items()} if isinstance(raw, dict) else {}
    conv1 = state.get("xception_features.conv1.weight")
    if conv1 is None or conv1.ndim != 4 or 32 % conv1.shape[0]:
        raise AnimbenchError(f"weight file {path}: no xception_features.conv1.weight of 32 (or 32 / k) filters; "
                             "expected Graphonomy's universal_trained.pth")
    net = GraphonomyNet(div=32 // int(conv1.shape[0]))
    own = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    missing = [k for k in own if k not in state]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or wrong:
        what = (f"{len(missing)} tensor(s) missing (first {missing[0]})" if missing else
                f"{wrong[0]} has shape {tuple(state[wrong[0]].shape)}, expected {tuple(own[wrong[0]].shape)}")
        raise AnimbenchError(f"weight file {path}: {what}; expected the Graphonomy universal model's layout")
    net.load_state_dict({k: state[k] for k in own}, strict=False)
    return net.eval().to(device)


class GraphonomySegmenter:
    """Foreground masks of RGB frames with the universal model (module docstring)."""

    def __init__(self, path: str | Path | None = None, device: str = "cpu") -> None:
        self.path = Path(path) if path is not None else check_graphonomy()
        self.device = device
        self.net = load_graphonomy(self.path, device)

    def mask(self, frame: np.ndarray) -> np.ndarray:
        """uint8 RGB (H, W, 3) -> uint8 (H, W) foreground mask (255 = person)."""
        import torch
        import torch.nn.functional as F
        from PIL import Image

        from prep.masks.graphonomy_net import CIHP_FLIP

        h, w = frame.shape[:2]
        image = Image.fromarray(frame).resize((INPUT_SIZE, INPUT_SIZE), Image.BICUBIC)
        flipped = image.transpose(Image.FLIP_LEFT_RIGHT)
        total, size = None, None
        with torch.no_grad():
            for scale in TTA_SCALES:
                side = (int(INPUT_SIZE * scale), int(INPUT_SIZE * scale))
                batch = np.stack([np.asarray(im.resize(side, Image.BILINEAR), np.float32) for im in (image, flipped)])
                batch = torch.from_numpy(batch * 2.0 / 255.0 - 1.0).permute(0, 3, 1, 2)[:, [2, 1, 0]]  # BGR
                logits = self.net(batch.to(self.device))
                out = (logits[:1] + logits[1:, list(CIHP_FLIP)].flip(-1)) / 2
                if total is None:
                    total, size = out, out.shape[2:]
                else:
                    total = total + F.interpolate(out, size=size, mode="bilinear", align_corners=True)
            foreground = 1.0 - total.softmax(1)[0, 0]
        mask = (foreground * 255).round().byte().cpu().numpy()
        return cv2.resize(mask, (w, h))
