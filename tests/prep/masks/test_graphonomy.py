"""`--masks graphonomy`: the missing weight file is one line naming it and its folder; the network has the
official layout; a small test-made weight file loads through the manifest (the official key renaming
included) and gives masks with the official test-time flips; the worker stores them."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from plumbing.errors import AnimbenchError
from prep.masks.graphonomy import GRAPHONOMY_FILE, GraphonomySegmenter, load_graphonomy
from prep.masks.graphonomy_net import CIHP_GRAPH, PASCAL_GRAPH, GraphonomyNet, normalized_adjacency
from prep.masks.sources import check_mask_source

DIV = 32  # channel widths / 32 (the stem has one filter): the 4 scales x 2 flips cost a fraction of a second


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("ANIMBENCH_WEIGHTS", str(folder))
    return folder


def _small_file(folder, official_names: bool = True):
    """A GraphonomyNet at 1/16 width with seeded weights, saved as the released file would hold it: under
    DataParallel's 'module.' prefix, with the source graph layers under their un-prefixed names. The semantic
    layer is scaled so that the logits spread over a few units (random weights saturate the softmax)."""
    torch.manual_seed(0)
    net = GraphonomyNet(div=DIV).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.fill_(1.0)
            m.bias.data.zero_()
    with torch.no_grad():  # background logit ~ log(19) + N(0, 1) once summed over the 4 scales: P(bg) ~ 0.5
        net.semantic.bias.zero_()
        logits = net(torch.rand(2, 3, 64, 64) * 2 - 1)
        net.semantic.weight[1:] *= 0.1 / logits[:, 1:].std()
        spread = 4 * logits[:, 0].std()
        net.semantic.weight[0] /= spread
        net.semantic.bias[0] = np.log(19) / 4 - logits[:, 0].mean() / spread
    state = net.state_dict()
    if official_names:
        renamed = {}
        for k, v in state.items():
            k = k.replace("source_featuremap_2_graph", "featuremap_2_graph").replace("source_graph", "graph")
            renamed[f"module.{k}"] = v
        state = renamed
    torch.save(state, folder / GRAPHONOMY_FILE)
    return net


def test_missing_weight_file_is_one_line(weights_dir):
    with pytest.raises(AnimbenchError) as err:
        check_mask_source("graphonomy", [])
    msg = str(err.value)
    assert "\n" not in msg and GRAPHONOMY_FILE in msg and str(weights_dir) in msg


def test_full_size_network_has_the_official_layout():
    """Names and shapes the official modules give (Xception-65 blocks with their ReLU-shifted rep indices,
    ASPP, decoder, the 7- and 20-node graphs, the 20x7 transfer, fc_graph over 3 x 128 features)."""
    state = GraphonomyNet().state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    expected = {
        "xception_features.conv1.weight": (32, 3, 3, 3),
        "xception_features.block1.rep.0.depthwise.weight": (64, 1, 3, 3),  # starts without a ReLU: no shift
        "xception_features.block1.rep.4.pointwise.weight": (128, 128, 1, 1),  # the strided conv
        "xception_features.block2.block2_lastconv.1.pointwise_bn.running_var": (256,),
        "xception_features.block3.skip.weight": (728, 256, 1, 1),
        "xception_features.block19.rep.5.pointwise.weight": (728, 728, 1, 1),
        "xception_features.block20.rep.3.pointwise.weight": (1024, 728, 1, 1),
        "xception_features.block20.rep.5.depthwise.weight": (1024, 1, 3, 3),
        "xception_features.block20.skip.weight": (1024, 728, 1, 1),
        "xception_features.conv5.pointwise.weight": (2048, 1536, 1, 1),
        "aspp1.atrous_convolution.weight": (256, 2048, 1, 1),
        "aspp4.atrous_convolution.depthwise.weight": (2048, 1, 3, 3),
        "global_avg_pool.1.weight": (256, 2048, 1, 1),
        "concat_projection_conv1.weight": (256, 1280, 1, 1),
        "feature_projection_conv1.weight": (48, 256, 1, 1),
        "decoder.0.atrous_convolution.depthwise.weight": (304, 1, 3, 3),
        "semantic.weight": (20, 256, 1, 1), "semantic.bias": (20,),
        "source_featuremap_2_graph.pre_fea": (256, 7), "target_featuremap_2_graph.pre_fea": (256, 20),
        "target_graph_2_fea.node_fea_for_res": (256, 1), "target_graph_2_fea.weight": (128, 256),
        "target_skip_conv.0.bias": (256,), "transpose_graph.adj": (20, 7), "fc_graph.weight": (384, 128),
        "source_graph_conv3.weight": (128, 128),
    }
    assert {k: shapes.get(k) for k in expected} == expected
    assert "xception_features.block1.rep.5.pointwise.weight" not in shapes  # no 4th conv in block 1
    assert not any(k.startswith("adj") for k in shapes)  # the fixed adjacencies are not in the file
    assert sum(v.numel() for k, v in state.items() if not k.endswith("num_batches_tracked")) > 41_000_000


@pytest.mark.skipif(importlib.util.find_spec("networkx") is None, reason="networkx not installed")
def test_adjacency_matches_networkx_preprocessing():
    """graph.preprocess_adj builds them with networkx + scipy: same numbers."""
    import networkx as nx

    for graph in (CIHP_GRAPH, PASCAL_GRAPH):
        a = nx.to_numpy_array(nx.from_dict_of_lists(graph), nodelist=sorted(graph)) + np.eye(len(graph))
        d = np.diag(a.sum(1) ** -0.5)
        np.testing.assert_allclose(normalized_adjacency(graph), d @ a @ d, rtol=1e-6)


def test_test_made_file_loads_and_segments(weights_dir):
    net = _small_file(weights_dir)
    segmenter = GraphonomySegmenter()  # located through the weights manifest
    loaded = segmenter.net.state_dict()
    for k, v in net.state_dict().items():
        assert torch.equal(loaded[k], v), k
    rng = np.random.default_rng(3)
    frame = np.clip(rng.normal(128, 60, (40, 48, 3)), 0, 255).astype(np.uint8)
    frame[10:30, 12:30] = (200, 150, 120)
    mask = segmenter.mask(frame)
    assert mask.shape == (40, 48) and mask.dtype == np.uint8 and np.ptp(mask) > 0
    # the flip averaging (left/right classes swapped back) makes the mask of a mirrored frame the mirrored
    # mask; the background probability does not depend on the swap
    mirrored = segmenter.mask(np.ascontiguousarray(frame[:, ::-1]))
    assert np.abs(mirrored.astype(int) - mask[:, ::-1].astype(int)).max() <= 1


def test_incomplete_file_is_one_line(weights_dir):
    net = GraphonomyNet(div=DIV)
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("fc_graph")}
    torch.save(state, weights_dir / GRAPHONOMY_FILE)
    with pytest.raises(AnimbenchError, match=r"1 tensor\(s\) missing \(first fc_graph.weight\)") as err:
        load_graphonomy(weights_dir / GRAPHONOMY_FILE)
    assert "\n" not in str(err.value)
    (weights_dir / GRAPHONOMY_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(AnimbenchError, match="not a loadable state_dict"):
        load_graphonomy(weights_dir / GRAPHONOMY_FILE)


def test_worker_stores_graphonomy_masks(weights_dir, tmp_path):
    """The prep worker (in this process) with --masks graphonomy: every stored frame's mask is the
    segmenter's mask of that stored frame; the manifest records the file's sha256."""
    import cv2

    from plumbing.files import sha256_file
    from prep.config import PrepConfig
    from prep.recipes import folder
    from prep.store import FRAMES_DIR, FrameStore, finalize_store
    from prep.worker import UnitProcessor

    _small_file(weights_dir, official_names=False)
    src = tmp_path / "src" / "train" / "clip"
    src.mkdir(parents=True)
    rng = np.random.default_rng(5)
    for i in range(2):
        cv2.imwrite(str(src / f"{i}.png"), rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    [unit] = folder.plan(tmp_path / "src")
    config = PrepConfig("folder", size=0, masks="graphonomy")
    root = tmp_path / "store"
    result = UnitProcessor(config).run(unit, root / FRAMES_DIR / "shard.parquet")
    assert result["failures"] == []
    from prep.masks.sources import mask_facts

    finalize_store(root, result["videos"], config={}, encode=config.encode, masks=mask_facts("graphonomy"))
    store = FrameStore(root)
    assert store.mask_info["weights"]["sha256"] == sha256_file(weights_dir / GRAPHONOMY_FILE)
    masks = store.masks("clip")
    assert sorted(masks) == [0, 1] and masks[0].shape == (24, 32)
    frame = store.read("clip", [1])[0]
    np.testing.assert_array_equal(masks[1], GraphonomySegmenter().mask(frame).astype(np.float32) / 255)
