"""The inputs of inference, read as float frames: a source image, a driving video decoded frame by frame, and the
inputs `animbench animate` / `finetune` accept for a set of images (an image, a folder of images, a video or a
frame store).

Frames a model takes are float32 (H, W, 3) in [0, 1]. An input whose aspect ratio differs from the model's is
centre-cropped to it (a one-line warning on stderr), never squashed, then resized as the official demo does
(skimage `resize`, anti-aliased).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from plumbing.errors import AnimbenchError
from prep.store import FrameStore


def as_float(frames: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """uint8 or float frames (..., H, W, C>=3) -> float32 (..., h, w, 3) in [0, 1], skimage-resized as the demo."""
    frames = np.asarray(frames)[..., :3]
    if size is not None and frames.shape[-3:-1] != tuple(size):
        from skimage.transform import resize

        batch = frames.reshape((-1,) + frames.shape[-3:])
        out = np.stack([resize(f, size, anti_aliasing=True) for f in batch]).astype(np.float32)
        return out.reshape(frames.shape[:-3] + out.shape[-3:])
    if frames.dtype == np.uint8:
        return frames.astype(np.float32) / 255.0
    return frames.astype(np.float32)


def centre_crop_box(height: int, width: int, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """(top, left, height, width) of the centred window with `size`'s aspect ratio; None when it already has it."""
    th, tw = size
    if height * tw == width * th:
        return None
    if width * th > height * tw:  # wider than the model's frames: cut the sides
        w = max(1, round(height * tw / th))
        return 0, (width - w) // 2, height, w
    h = max(1, round(width * th / tw))
    return (height - h) // 2, 0, h, width


def fit_frame(frame: np.ndarray, size: tuple[int, int] | None, what: str) -> tuple[np.ndarray, list[int] | None]:
    """Centre-crop one frame to `size`'s aspect ratio (a one-line warning on stderr) instead of squashing it."""
    if size is None:
        return frame, None
    box = centre_crop_box(frame.shape[0], frame.shape[1], size)
    if box is None:
        return frame, None
    top, left, h, w = box
    print(f"animbench: warning: {what} is {frame.shape[1]}x{frame.shape[0]} (W x H), the model takes "
          f"{size[1]}x{size[0]}: centre-cropped to {w}x{h} (left {left}, top {top}), not squashed",
          file=sys.stderr, flush=True)
    return frame[top:top + h, left:left + w], list(box)


def load_image(path: str | os.PathLike, size: tuple[int, int] | None) -> tuple[np.ndarray, list[int] | None]:
    """read_image, with the crop box it cut ((top, left, height, width), or None) for the output's record."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            array = np.asarray(img.convert("RGB"))  # alpha dropped, as the demo's [..., :3]
    except (FileNotFoundError, UnidentifiedImageError, OSError) as e:
        raise AnimbenchError(f"source image {path}: cannot be read ({e})") from None
    array, box = fit_frame(array, size, f"source image {path}")
    return as_float(array, size), box


def read_image(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """An image file as float32 (H, W, 3) in [0, 1]: centre-cropped to `size`'s aspect ratio (with a warning),
    then resized to `size` (H, W) like the official demo."""
    return load_image(path, size)[0]


class DrivingVideo:
    """A video decoded frame by frame with PyAV (any container FFmpeg reads: mp4, mov, mkv, gif); iterating
    yields float32 (h, w, 3) frames in [0, 1], each centre-cropped to `size`'s aspect ratio (with a warning) and
    resized to `size` as it is decoded, so memory holds one full-size frame at a time."""

    def __init__(self, path: str | os.PathLike, size: tuple[int, int] | None = None):
        import av

        self.path, self.size, self.crop = Path(path), None if size is None else tuple(size), None
        if not self.path.is_file():
            raise AnimbenchError(f"driving video {path}: file not found")
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.guessed_rate
                self.num_frames = int(stream.frames) or None  # None: the container does not say
                shape = (stream.codec_context.height, stream.codec_context.width)
        except (av.FFmpegError, IndexError) as e:
            raise AnimbenchError(f"driving video {path}: cannot be decoded ({e})") from None
        self.fps = float(rate) if rate else 25.0
        self._probed = all(shape)
        if self._probed:  # the crop (and its warning) is known before the first frame is decoded
            self.crop = fit_frame(np.empty((*shape, 0), np.uint8), self.size, f"driving video {path}")[1]

    def __iter__(self) -> Iterator[np.ndarray]:
        import av

        count = 0
        try:
            with av.open(str(self.path)) as container:
                for frame in container.decode(container.streams.video[0]):
                    array = frame.to_ndarray(format="rgb24")
                    if count == 0 and not self._probed:  # the container did not say its frame size
                        self.crop = fit_frame(array, self.size, f"driving video {self.path}")[1]
                    box = None if self.size is None else centre_crop_box(*array.shape[:2], self.size)
                    if box is not None:
                        top, left, h, w = box
                        array = array[top:top + h, left:left + w]
                    count += 1
                    yield as_float(array, self.size)
        except (av.FFmpegError, IndexError) as e:
            raise AnimbenchError(f"driving video {self.path}: cannot be decoded at frame {count} ({e})") from None
        if count == 0:
            raise AnimbenchError(f"driving video {self.path}: no frames")


def read_video(path: str | os.PathLike, size: tuple[int, int] | None = None) -> tuple[np.ndarray, float]:
    """A whole video as float32 (T, H, W, 3) in [0, 1] and its fps (DrivingVideo's frames, stacked)."""
    video = DrivingVideo(path, size)
    return np.stack(list(video)), video.fps


INPUT_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file -> uint8 RGB (H, W, 3), read with OpenCV as the official loaders do (alpha dropped)."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise AnimbenchError(f"{path}: not a readable image (expected {', '.join(INPUT_IMAGE_EXTENSIONS)})")
    return np.ascontiguousarray(image[..., ::-1])


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The image files of a folder, sorted by name (hidden files skipped)."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in INPUT_IMAGE_EXTENSIONS)


def input_frames(path: str | os.PathLike, what: str) -> tuple[str, Iterator[tuple[str, np.ndarray]], float]:
    """An input of `animbench animate` / `finetune` -> (kind, (name, uint8 RGB (H, W, 3)) in order, fps): an
    image file, a folder of images (sorted name order), a video file (decoded in order) or a frame store (every
    frame of every video, videos in stored order). The path is checked now, the frames read lazily."""
    root = Path(path)
    if root.is_dir() and (root / "manifest.json").is_file():
        store = FrameStore(root)
        videos = store.videos()
        fps = float(store.info(videos[0]).get("fps") or 25.0) if videos else 25.0

        def stored() -> Iterator[tuple[str, np.ndarray]]:
            for vid in videos:
                for i, frame in enumerate(store.iter_frames(vid)):
                    yield f"{vid}#{i}", frame
        return "store", stored(), fps
    if root.is_dir():
        files = image_files(root)
        if not files:
            raise AnimbenchError(f"{what} {root}: holds no images ({', '.join(INPUT_IMAGE_EXTENSIONS)}) and is "
                                 "not a frame store")
        return "images", ((f.name, read_rgb(f)) for f in files), 25.0
    if not root.is_file():
        raise AnimbenchError(f"{what} {root}: no such file or folder (expected an image, a folder of images, a "
                             "video or a frame store)")
    if root.suffix.lower() in INPUT_IMAGE_EXTENSIONS:
        return "image", iter([(root.name, read_rgb(root))]), 25.0
    video = DrivingVideo(root)  # checks the container now

    def decoded() -> Iterator[tuple[str, np.ndarray]]:
        for i, frame in enumerate(video):
            yield f"{root.name}#{i}", np.round(frame * 255.0).astype(np.uint8)
    return "video", decoded(), video.fps


