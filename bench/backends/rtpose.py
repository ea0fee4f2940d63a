"""rtpose body model for AKD / MKR / pose distance: the network and decode live in prep/poses/rtpose.py (prep's
`--poses rtpose` detector uses the same code); this module keeps the bench's import path."""

from prep.poses.rtpose import (
    BOXSIZE,
    NUM_JOINTS,
    STRIDE,
    SWAP_HEAT,
    THRE1,
    WEIGHT_FILE,
    RtPoseKeypoints,
    RtPoseNet,
    flip_average,
    joints_from_heatmaps,
    load_weights,
    network_input,
    upsample_maps,
)

__all__ = ["BOXSIZE", "NUM_JOINTS", "STRIDE", "SWAP_HEAT", "THRE1", "WEIGHT_FILE", "RtPoseKeypoints", "RtPoseNet",
           "flip_average", "joints_from_heatmaps", "load_weights", "network_input", "upsample_maps"]
