"""The one weights manifest: every pretrained file a loss or a metric backend needs, as data.

Each entry names the file as its library expects it, the folder that library looks in, and the hash it must
have. Nothing here downloads: users place files (or `animbench weights install --from DIR`) for offline use.
Losses (methods) and metric backends (bench) both resolve their files through `locate`.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from plumbing.errors import AnimbenchError
from plumbing.files import sha256_file


@dataclass(frozen=True)
class WeightFile:
    """A pretrained weight file: standard name, where its library looks, expected hash, who uses it."""

    name: str
    folder: str  # one of the FOLDERS keys, or a sub-path below one ("insightface:buffalo_l")
    users: tuple[str, ...]  # loss / metric backends that need it
    source: str  # where a user gets it
    sha256_prefix: str | None = None  # torch-hub style: the hash prefix embedded in the file name
    sha256: str | None = None  # full hash, when known
    description: str = ""

    def path(self) -> Path:
        """Where the file is expected on this machine."""
        return folder_path(self.folder) / self.name


def _torch_hub_checkpoints() -> Path:
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch"
    )
    return Path(torch_home) / "hub" / "checkpoints"


def _animbench_weights() -> Path:
    return Path(os.environ.get("ANIMBENCH_WEIGHTS", os.path.expanduser("~/.cache/animbench/weights")))


def _insightface_models() -> Path:
    return Path(os.environ.get("INSIGHTFACE_HOME", os.path.expanduser("~/.insightface"))) / "models"


FOLDERS = {
    "torch_hub": _torch_hub_checkpoints,  # torchvision, lpips trunks, pytorch-fid, face-alignment
    "animbench": _animbench_weights,  # evaluation networks with no library of their own (OpenFace, re-id, rtpose)
    "insightface": _insightface_models,  # insightface model packs, one folder per pack
}


def folder_path(folder: str) -> Path:
    """Resolve a manifest folder ("torch_hub", "animbench", "insightface:buffalo_l") to a path."""
    base, _, sub = folder.partition(":")
    if base not in FOLDERS:
        raise AnimbenchError(f"weights folder {folder!r}: expected one of {sorted(FOLDERS)}")
    root = FOLDERS[base]()
    return root / sub if sub else root


WEIGHTS: dict[str, WeightFile] = {}


def register_weight(w: WeightFile) -> WeightFile:
    """Add a file to the manifest (modules declare their weights next to the code that loads them)."""
    if w.name in WEIGHTS and WEIGHTS[w.name] != w:
        raise ValueError(f"weight file {w.name} registered twice with different facts")
    WEIGHTS[w.name] = w
    return w


def check_hash(w: WeightFile, path: str | os.PathLike) -> str | None:
    """None when the file's hash matches the manifest, else a one-line reason."""
    if not (w.sha256 or w.sha256_prefix):
        return None
    digest = sha256_file(path)
    if w.sha256 and digest != w.sha256:
        return f"{path}: sha256 {digest[:16]}... != expected {w.sha256[:16]}..."
    if w.sha256_prefix and not digest.startswith(w.sha256_prefix):
        return f"{path}: sha256 {digest[:16]}... does not start with {w.sha256_prefix} (the hash in its name)"
    return None


def locate(name: str, *, verify_hash: bool = True) -> Path:
    """The path of a registered weight file, checked; a clear error says where to place a missing one."""
    w = get(name)
    path = w.path()
    if not path.is_file():
        raise AnimbenchError(
            f"missing weight file {w.name}: place it in {path.parent} (needed by {', '.join(w.users)}; "
            f"get it from {w.source}; or run `animbench weights install --from DIR`)"
        )
    if verify_hash and (reason := check_hash(w, path)):
        raise AnimbenchError(f"weight file {reason}")
    return path


def get(name: str) -> WeightFile:
    """The manifest entry of one file."""
    try:
        return WEIGHTS[name]
    except KeyError:
        raise AnimbenchError(f"unknown weight file {name!r}: see `animbench weights list`") from None


def status(name: str) -> str:
    """'ok', 'missing' or a hash-mismatch reason, for `weights list` / `weights verify`."""
    w = get(name)
    if not w.path().is_file():
        return "missing"
    return check_hash(w, w.path()) or "ok"


def install_from(src_dir: str | os.PathLike) -> list[tuple[str, str]]:
    """Copy every manifest file found in src_dir (searched recursively) to where its library looks."""
    src = Path(src_dir)
    if not src.is_dir():
        raise AnimbenchError(f"weights install: {src} is not a directory")
    found = {p.name: p for p in src.rglob("*") if p.is_file()}
    done = []
    for name, w in sorted(WEIGHTS.items()):
        if name not in found:
            continue
        if reason := check_hash(w, found[name]):
            raise AnimbenchError(f"weights install: {reason}")
        dest = w.path()
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        shutil.copyfile(found[name], tmp)
        os.replace(tmp, dest)
        done.append((name, str(dest)))
    return done


# --- the manifest ------------------------------------------------------------------------------------------
# Every file is declared here, next to one another, so `animbench weights list` shows everything whatever was
# imported; "users" names each loss / metric / prep or animate option that loads the file.
DWPOSE_FILE = "dw-ll_ucoco_384.onnx"
CAFFE_VGG19_FILE = "vgg19-d01eb7cb.pth"
VGG_FACE_FILE = "vgg_face_weights.pth"
GRAPHONOMY_FILE = "universal_trained.pth"
_TORCHVISION = "https://download.pytorch.org/models/"
for _w in (
    WeightFile("vgg19-dcbb9e9d.pth", "torch_hub", ("loss:perceptual_vgg19", "loss:pose2img_vgg19"),
               _TORCHVISION + "vgg19-dcbb9e9d.pth", sha256_prefix="dcbb9e9d",
               description="torchvision VGG19 ImageNet (FOMM perceptual pyramid loss, pix2pixHD's VGG loss)"),
    WeightFile("alexnet-owt-7be5be79.pth", "torch_hub", ("metric:lpips", "metric:lpips_body", "metric:lpips_face"),
               _TORCHVISION + "alexnet-owt-7be5be79.pth", sha256_prefix="7be5be79", description="torchvision AlexNet trunk for LPIPS(net='alex')"),
    WeightFile("vgg16-397923af.pth", "torch_hub", ("metric:lpips_vgg",), _TORCHVISION + "vgg16-397923af.pth",
               sha256_prefix="397923af", description="torchvision VGG16 trunk for LPIPS(net='vgg')"),
    # pytorch-fid's FID-Inception; sha256 and size (95,628,359 bytes) as published by genforce's inception.py
    # and several users for this URL; torch-fidelity re-hosts the same bytes as weights-inception-...pth
    WeightFile("pt_inception-2015-12-05-6726825d.pth", "torch_hub", ("metric:fid",),
               "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
               "pt_inception-2015-12-05-6726825d.pth", sha256_prefix="6726825d",
               sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
               description="FID-Inception (TF inception-2015-12-05 ported by pytorch-fid), state_dict"),
    # pose-evaluation networks (bench/backends). No copy of these three was available to hash: sha256 unknown.
    WeightFile("openface.pth", "animbench", ("metric:aed_face",),
               "thnkim/OpenFacePytorch@d002218 openface.pth (linked from AliaksandrSiarohin/pose-evaluation)",
               description="OpenFace nn4.small2.v1 PyTorch port, plain state_dict (224 tensors); sha256 unknown"),
    WeightFile("reid_model.pth", "animbench", ("metric:aed_body",),
               "pose-evaluation README: reid_baseline/reid_model.pth (yadi.sk/d/jAPhvFEFp6qzIw)",
               description="layumi ft_net ResNet-50 Market-1501 (751 classes) state_dict; sha256 unknown"),
    WeightFile("pose_model.pth", "animbench", ("metric:akd_body", "metric:mkr", "metric:pose_distance_body",
                                              "metric:missed_detections_body", "prep:poses-rtpose",
                                              "animate:pose-backend-rtpose"),
               "pose-evaluation README: pose_estimation/network/weight/pose_model.pth (yadi.sk/d/0L-PgAaGRKgkJA)",
               description="rtpose VGG19 6-stage CPM (CMU pose_iter_440000 converted), state_dict; sha256 unknown"),
    # face-alignment 1.5 file names; the hex in the name is the sha256 prefix (torch.hub convention).
    WeightFile("s3fd-619a316812.pth", "torch_hub", ("metric:akd_face", "metric:pose_error", "metric:pose_error_fit"),
               "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth", sha256_prefix="619a316812",
               description="S3FD face detector for face-alignment (the 2018 s3fd_convert.pth, renamed)"),
    WeightFile("2DFAN4-11f355bf06.pth.tar", "torch_hub", ("metric:akd_face", "metric:pose_error", "metric:pose_error_fit"),
               "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar",
               sha256_prefix="11f355bf06", description="2D-FAN-4 68-landmark network (the 2018 2DFAN-4.pth.tar)"),
    WeightFile("w600k_r50.onnx", "insightface:buffalo_l", ("metric:identity_error",),
               "insightface buffalo_l model pack (buffalo_l.zip from deepinsight/insightface releases)",
               description="ArcFace ResNet-50 (WebFace600K) recogniser, 112x112 -> 512; sha256 unknown"),
    # DWPose whole-body pose (prep --poses dwpose, animate --pose-backend dwpose, the *_dwpose metrics)
    WeightFile(DWPOSE_FILE, "animbench",
               ("prep:poses-dwpose", "animate:pose-backend-dwpose", "metric:pose_distance_dwpose",
                "metric:pose_distance_dwpose_body", "metric:pose_distance_dwpose_face", "metric:pose_distance_dwpose_hands",
                "metric:missed_detections_dwpose"),
               "https://huggingface.co/yzd-v/DWPose/blob/main/dw-ll_ucoco_384.onnx (DWPose, IDEA-Research)",
               description="DWPose RTMPose-l whole-body 384x288 ONNX, 133 COCO-WholeBody points; sha256 unknown"),
    # latent-pose reenactment: its losses' trunks and its masks (prep --masks graphonomy); sha256 unknown
    WeightFile(CAFFE_VGG19_FILE, "animbench", ("loss:latent_pose_perceptual",),
               "https://web.eecs.umich.edu/~justincj/models/vgg19-d01eb7cb.pth (jcjohnson/pytorch-vgg)",
               description="caffe-converted VGG19 of the latent-pose perceptual loss"),
    WeightFile(VGG_FACE_FILE, "animbench", ("loss:latent_pose_idt_embed",),
               "shrubb/latent-pose-reenactment README (criterions/common/vgg_face_weights.pth, Google Drive)",
               description="VGG-Face (VGG16 features) of the latent-pose identity loss"),
    WeightFile(GRAPHONOMY_FILE, "animbench", ("prep:masks-graphonomy",),
               "Graphonomy universal model (github.com/Gaoyiminggithub/Graphonomy README: Google Drive "
               "1sWJ54lCBFnzCNz5RTCGQmkVovkY9x8_D; LPD issue #1 has a re-host); LPD keeps it as data/model/"
               + GRAPHONOMY_FILE,
               description="Graphonomy universal human parsing (Xception DeepLabv3+ with graph transfer), 20 CIHP "
                           "classes; sha256 unknown"),
):
    register_weight(_w)
