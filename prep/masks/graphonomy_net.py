"""Graphonomy's universal human-parsing network as the official inference script builds it
(`deeplab_xception_transfer.deeplab_xception_transfer_projection_savemem(n_classes=20, hidden_layers=128,
source_classes=7)`, Gong et al., CVPR 2019; the shrubb/Graphonomy fork LPD uses). Written from the official
network code: the reference gives no key dump for it, so the state_dict layout (names and shapes) follows that
code, module by module. `div` divides every channel width (1 = the released model; tests use small widths).

Data flow, for an input (N, 3, H, W) BGR in [-1, 1]:
  Xception-65 (output stride 16) -> (N, 2048, H/16, W/16) and low-level features (N, 256, H/4, W/4)
  ASPP (rates 6, 12, 18 + image pooling) -> (N, 256, H/16, W/16) -> up to H/4, concat with the projected
  low-level features (48) -> decoder -> x (N, 256, H/4, W/4)
  graph reasoning: x -> a 7-node PASCAL "source" graph and a 20-node CIHP "target" graph (128 features each),
  three rounds of graph convolution, the source transferred to the target through the learnt 20x7 adjacency and
  by feature similarity, fused by fc_graph; graph -> feature maps, added to x
  semantic 1x1 conv -> (N, 20, H/4, W/4) -> bilinear (align_corners) up to (N, 20, H, W): CIHP logits.

Two official quirks kept: the third source graph round reuses source_graph_conv2 (source_graph_conv3 is
loaded but unused), and the first ReLU of an Xception block runs in place, so its residual branch adds the
ReLU'd input.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CIHP_CLASSES, PASCAL_CLASSES = 20, 7
CIHP_FLIP = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 14, 17, 16, 19, 18)  # left <-> right arm, leg, shoe
PASCAL_GRAPH = {0: [0], 1: [1, 2], 2: [1, 2, 3, 5], 3: [2, 3, 4], 4: [3, 4], 5: [2, 5, 6], 6: [5, 6]}
CIHP_GRAPH = {0: [], 1: [2, 13], 2: [1, 13], 3: [14, 15], 4: [13], 5: [6, 7, 9, 10, 11, 12, 14, 15],
              6: [5, 7, 10, 11, 14, 15, 16, 17], 7: [5, 6, 9, 10, 11, 12, 14, 15], 8: [16, 17, 18, 19],
              9: [5, 7, 10, 16, 17, 18, 19], 10: [5, 6, 7, 9, 11, 12, 13, 14, 15, 16, 17], 11: [5, 6, 7, 10, 13],
              12: [5, 7, 10, 16, 17], 13: [1, 2, 4, 10, 11], 14: [3, 5, 6, 7, 10], 15: [3, 5, 6, 7, 10],
              16: [6, 8, 9, 10, 12, 18], 17: [6, 8, 9, 10, 12, 19], 18: [8, 9, 16], 19: [8, 9, 17]}
# graph.cihp2pascal_nlp_adj (7 PASCAL rows x 20 CIHP columns), the official fixed transfer adjacency
CIHP2PASCAL = np.array([
    [1.0, .35333052, .32727194, .17418084, .18757584, .40608522, .37503981, .35448462, .22598555, .23893579,
     .33064262, .28923404, .27986573, .4211553, .36915778, .41377746, .32485771, .37248222, .36865639, .41500332],
    [.39615879, .46201529, .52321467, .30826114, .25669527, .54747773, .3670523, .3901983, .27519473, .3433325,
     .52728509, .32771333, .34819325, .63882953, .68042925, .69368576, .63395791, .65344337, .59538781, .6071375],
    [.16373166, .21663339, .3053872, .28377612, .1372435, .4448808, .29479995, .31092595, .22703953, .33983576,
     .75778818, .2619818, .37069392, .35184867, .49877512, .49979437, .51853277, .52517541, .32517741, .32377309],
    [.32687232, .38482461, .37693463, .41610834, .20415749, .76749079, .35139853, .3787411, .28411737, .35155421,
     .58792618, .31141718, .40585111, .51189218, .82042737, .8342413, .70732188, .72752501, .60327325, .61431337],
    [.34069369, .34817292, .37525998, .36497069, .17841617, .69746208, .31731463, .34628951, .25167277, .32072379,
     .56711286, .24894776, .37000453, .52600859, .82483993, .84966274, .7033991, .73449378, .56649608, .58888791],
    [.28477487, .35139564, .42742352, .41664321, .20004676, .78566833, .42237487, .41048549, .37933812, .46542516,
     .62444759, .3274493, .49466009, .49314658, .71244233, .71497003, .8234787, .83566589, .62597135, .62626812],
    [.3011378, .31775977, .42922647, .36896257, .17597556, .72214655, .39162804, .38137872, .34980296, .43818419,
     .60879174, .26762545, .46271161, .51150476, .72318109, .73678399, .82620388, .84942166, .5943811, .60607602]])


def normalized_adjacency(graph: dict[int, list[int]]) -> np.ndarray:
    """graph.preprocess_adj: the undirected adjacency of a dict of neighbour lists (a self-loop counts 1), plus
    the identity, symmetrically normalised D^-1/2 (A + I) D^-1/2; float32 (n, n)."""
    n = len(graph)
    a = np.zeros((n, n))
    for i, neighbours in graph.items():
        for j in neighbours:
            a[i, j] = a[j, i] = 1.0
    a += np.eye(n)
    d = a.sum(1) ** -0.5
    return (a * d[:, None] * d[None, :]).astype(np.float32)


class SepConvSame(nn.Module):
    """SeparableConv2d_same: TF-style fixed padding, depthwise 3x3 + BN, pointwise 1x1 + BN, no activation."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, stride, 0, dilation, groups=cin, bias=False)
        self.depthwise_bn = nn.BatchNorm2d(cin)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)
        self.pointwise_bn = nn.BatchNorm2d(cout)
        total = 2 * dilation  # effective kernel 3 + 2 (dilation - 1), minus one
        self.pad = (total // 2, total - total // 2) * 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.depthwise_bn(self.depthwise(F.pad(x, self.pad)))
        return self.pointwise_bn(self.pointwise(x))


class SepConvAspp(nn.Module):
    """SeparableConv2d_aspp: depthwise 3x3 (padding = dilation) + BN + ReLU, pointwise + BN + ReLU."""

    def __init__(self, cin: int, cout: int, dilation: int = 1) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, 1, dilation, dilation, groups=cin, bias=False)
        self.depthwise_bn = nn.BatchNorm2d(cin)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)
        self.pointwise_bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.depthwise_bn(self.depthwise(x)))
        return F.relu(self.pointwise_bn(self.pointwise(x)))


class Atrous(nn.Module):
    """ASPP_module / Decoder_module: one SepConvAspp under the name `atrous_convolution`."""

    def __init__(self, cin: int, cout: int, dilation: int) -> None:
        super().__init__()
        self.atrous_convolution = SepConvAspp(cin, cout, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.atrous_convolution(x)


class Aspp1x1(nn.Module):
    """ASPP_module_rate0: 1x1 conv + BN + ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.atrous_convolution = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.atrous_convolution(x)))


def _rep(cin: int, cout: int, reps: int, stride: int, dilation: int, start_with_relu: bool, grow_first: bool,
         is_last: bool) -> list[nn.Module]:
    """An Xception block's `rep` list in the official order (ReLUs hold no weights but shift the indices)."""
    rep: list[nn.Module] = []
    filters = cin
    if grow_first:
        rep += [nn.ReLU(), SepConvSame(cin, cout, 1, dilation)]
        filters = cout
    for _ in range(reps - 1):
        rep += [nn.ReLU(), SepConvSame(filters, filters, 1, dilation)]
    if not grow_first:
        rep += [nn.ReLU(), SepConvSame(cin, cout, 1, dilation)]
    if not start_with_relu:
        rep = rep[1:]
    if stride != 1:
        rep += [nn.ReLU(), SepConvSame(cout, cout, 2, dilation)]
    if is_last:
        rep += [nn.ReLU(), SepConvSame(cout, cout, 1, dilation)]
    return rep


class Block(nn.Module):
    """An Xception block: `rep` plus a residual (a strided 1x1 conv + BN when the shape changes)."""

    def __init__(self, cin: int, cout: int, reps: int, stride: int = 1, dilation: int = 1,
                 start_with_relu: bool = True, grow_first: bool = True, is_last: bool = False) -> None:
        super().__init__()
        self.skip = self.skipbn = None
        if cout != cin or stride != 1:
            self.skip = nn.Conv2d(cin, cout, 1, stride=1 if is_last else 2, bias=False)
            self.skipbn = nn.BatchNorm2d(cout)
        self.relu_first = start_with_relu
        self.rep = nn.Sequential(*_rep(cin, cout, reps, stride, dilation, start_with_relu, grow_first, is_last))

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.rep(inp)
        if self.relu_first:  # the official in-place ReLU changed the input the residual reads
            inp = F.relu(inp)
        return x + (inp if self.skip is None else self.skipbn(self.skip(inp)))


class Block2(nn.Module):
    """Entry block 2: also returns its pre-stride output (the decoder's low-level features)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.skip = nn.Conv2d(cin, cout, 1, stride=2, bias=False)
        self.skipbn = nn.BatchNorm2d(cout)
        self.rep = nn.Sequential(*_rep(cin, cout, 2, 1, 1, True, True, False))
        self.block2_lastconv = nn.Sequential(nn.ReLU(), SepConvSame(cout, cout, 2))

    def forward(self, inp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = self.rep(inp)
        return self.block2_lastconv(low) + self.skipbn(self.skip(F.relu(inp))), low


class Xception(nn.Module):
    """The modified aligned Xception backbone at output stride 16: (N, 3, H, W) -> (N, 2048, H/16, W/16) and
    low-level features (N, 256, H/4, W/4) (widths / div)."""

    def __init__(self, div: int = 1) -> None:
        super().__init__()

        def c(n: int) -> int:
            return max(1, n // div)

        self.conv1 = nn.Conv2d(3, c(32), 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c(32))
        self.conv2 = nn.Conv2d(c(32), c(64), 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c(64))
        self.block1 = Block(c(64), c(128), 2, stride=2, start_with_relu=False)
        self.block2 = Block2(c(128), c(256))
        self.block3 = Block(c(256), c(728), 2, stride=2)
        for i in range(4, 20):  # middle flow
            setattr(self, f"block{i}", Block(c(728), c(728), 3))
        self.block20 = Block(c(728), c(1024), 2, grow_first=False, is_last=True)
        self.conv3 = SepConvAspp(c(1024), c(1536), 2)
        self.conv4 = SepConvAspp(c(1536), c(1536), 2)
        self.conv5 = SepConvAspp(c(1536), c(2048), 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x, low = self.block2(self.block1(x))
        for i in range(3, 21):
            x = getattr(self, f"block{i}")(x)
        return self.conv5(self.conv4(self.conv3(x))), low  # SepConvAspp ends with a ReLU, as the official's


class GraphConv(nn.Module):
    """gcn.GraphConvolution without bias: relu(adj @ (x @ weight)), adj optional."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(cin, cout))

    def forward(self, x: torch.Tensor, adj: torch.Tensor | None = None) -> torch.Tensor:
        x = x @ self.weight
        return F.relu(x if adj is None else adj @ x)


class FeaturesToGraph(nn.Module):
    """gcn.Featuremaps_to_Graph: (N, C, H, W) -> (N, nodes, hidden), soft-assigning pixels to nodes."""

    def __init__(self, channels: int, hidden: int, nodes: int) -> None:
        super().__init__()
        self.pre_fea = nn.Parameter(torch.zeros(channels, nodes))
        self.weight = nn.Parameter(torch.zeros(channels, hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = x.flatten(2).transpose(1, 2)  # (N, HW, C)
        assign = F.softmax(pixels @ self.pre_fea, dim=-1)  # (N, HW, nodes)
        return F.relu(assign.transpose(1, 2) @ (pixels @ self.weight))


class GraphToFeatures(nn.Module):
    """gcn.Graph_to_Featuremaps_savemem: (N, nodes, hidden) and x (N, C, H, W) -> (N, C_out, H, W)."""

    def __init__(self, channels: int, out_channels: int, hidden: int) -> None:
        super().__init__()
        self.node_fea_for_res = nn.Parameter(torch.zeros(channels, 1))
        self.node_fea_for_hidden = nn.Parameter(torch.zeros(hidden, 1))
        self.weight = nn.Parameter(torch.zeros(hidden, out_channels))

    def forward(self, graph: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        pixels = x.flatten(2).transpose(1, 2)  # (N, HW, C)
        weight = (pixels @ self.node_fea_for_res) + (graph @ self.node_fea_for_hidden).transpose(1, 2)  # (N, HW, nodes)
        out = weight @ (graph @ self.weight)  # (N, HW, C_out)
        return F.relu(out.transpose(1, 2).reshape(n, -1, h, w))


class GraphTransfer(nn.Module):
    """gcn.Graph_trans with a learnt adjacency: relu(softmax(relu(adj)) @ (x @ weight))."""

    def __init__(self, hidden: int, begin: int, end: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(hidden, hidden))
        self.adj = nn.Parameter(torch.zeros(end, begin))

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        return F.relu(F.softmax(F.relu(adj), dim=-1) @ (x @ self.weight))


def similarity_transfer(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Source nodes pooled per target node by the softmax of their cosine similarities: (N, T, hidden)."""
    sim = F.normalize(target, dim=-1) @ F.normalize(source, dim=-1).transpose(-1, -2)
    return F.softmax(sim, dim=-1) @ source


class GraphonomyNet(nn.Module):
    """deeplab_xception_transfer_projection_savemem(n_classes=20, hidden_layers=128, source_classes=7):
    (N, 3, H, W) BGR in [-1, 1] -> (N, 20, H, W) CIHP logits (module docstring)."""

    def __init__(self, div: int = 1) -> None:
        super().__init__()

        def c(n: int) -> int:
            return max(1, n // div)

        feat, hidden = c(256), c(128)
        self.div = div
        self.xception_features = Xception(div)
        self.aspp1 = Aspp1x1(c(2048), feat)
        self.aspp2, self.aspp3, self.aspp4 = (Atrous(c(2048), feat, r) for r in (6, 12, 18))
        self.global_avg_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c(2048), feat, 1, bias=False),
                                             nn.BatchNorm2d(feat), nn.ReLU())
        self.concat_projection_conv1 = nn.Conv2d(5 * feat, feat, 1, bias=False)
        self.concat_projection_bn1 = nn.BatchNorm2d(feat)
        self.feature_projection_conv1 = nn.Conv2d(c(256), c(48), 1, bias=False)
        self.feature_projection_bn1 = nn.BatchNorm2d(c(48))
        self.decoder = nn.Sequential(Atrous(feat + c(48), feat, 1), Atrous(feat, feat, 1))
        self.semantic = nn.Conv2d(feat, CIHP_CLASSES, 1)
        self.target_featuremap_2_graph = FeaturesToGraph(feat, hidden, CIHP_CLASSES)
        self.target_graph_conv1, self.target_graph_conv2, self.target_graph_conv3 = (
            GraphConv(hidden, hidden) for _ in range(3))
        self.target_graph_2_fea = GraphToFeatures(feat, feat, hidden)
        self.target_skip_conv = nn.Sequential(nn.Conv2d(feat, feat, 1), nn.ReLU())
        self.source_featuremap_2_graph = FeaturesToGraph(feat, hidden, PASCAL_CLASSES)
        self.source_graph_conv1, self.source_graph_conv2, self.source_graph_conv3 = (
            GraphConv(hidden, hidden) for _ in range(3))
        self.transpose_graph = GraphTransfer(hidden, PASCAL_CLASSES, CIHP_CLASSES)
        self.fc_graph = GraphConv(3 * hidden, hidden)
        self.register_buffer("adj_target", torch.from_numpy(normalized_adjacency(CIHP_GRAPH)), persistent=False)
        self.register_buffer("adj_source", torch.from_numpy(normalized_adjacency(PASCAL_GRAPH)), persistent=False)
        self.register_buffer("adj_transfer", torch.from_numpy(CIHP2PASCAL.T.astype(np.float32)), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x, low = self.xception_features(image)
        size = x.shape[2:]
        pooled = F.interpolate(self.global_avg_pool(x), size=size, mode="bilinear", align_corners=True)
        x = torch.cat([self.aspp1(x), self.aspp2(x), self.aspp3(x), self.aspp4(x), pooled], dim=1)
        x = F.relu(self.concat_projection_bn1(self.concat_projection_conv1(x)))
        x = F.interpolate(x, size=low.shape[2:], mode="bilinear", align_corners=True)
        low = F.relu(self.feature_projection_bn1(self.feature_projection_conv1(low)))
        x = self.decoder(torch.cat([x, low], dim=1))  # (N, 256, H/4, W/4)

        source = self.source_featuremap_2_graph(x)  # (N, 7, hidden)
        s1 = self.source_graph_conv1(source, self.adj_source)
        s2 = self.source_graph_conv2(s1, self.adj_source)
        s3 = self.source_graph_conv2(s2, self.adj_source)  # sic: the official reuses conv2
        graph = self.target_featuremap_2_graph(x)  # (N, 20, hidden)
        for s, conv in ((s1, self.target_graph_conv1), (s2, self.target_graph_conv2), (s3, self.target_graph_conv3)):
            fused = torch.cat([graph, similarity_transfer(s, graph), self.transpose_graph(s, self.adj_transfer)], -1)
            graph = conv(self.fc_graph(fused), self.adj_target)
        x = self.target_skip_conv(x) + self.target_graph_2_fea(graph, x)
        return F.interpolate(self.semantic(x), size=image.shape[2:], mode="bilinear", align_corners=True)
