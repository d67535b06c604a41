"""A real video to play in the browser tests: VP8 WebM made by ffmpeg from ``imageio-ffmpeg`` (PyPI ships
the binary, no system ffmpeg needed).

``make_test_video`` encodes ffmpeg's ``testsrc`` pattern (a counter and a moving sweep) with temporal noise
over it, so the file does not compress to nothing: about 3.5 MB for 15 s at 2 Mbit/s, large enough that
Chromium fetches it in several ``Range`` requests and a seek near the end needs a request of its own.
A keyframe every second (``-g`` = the frame rate) makes any seek land within a second of its target.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def ffmpeg_exe() -> str:
    """The ffmpeg binary of the ``imageio-ffmpeg`` package (raises ImportError when it is not installed)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def make_test_video(path: Path, seconds: int = 15, size: str = "320x240", rate: int = 25,
                    bitrate: str = "2M") -> Path:
    """Write a ``seconds`` long VP8 WebM (no audio) to ``path``; return ``path``."""
    cmd = [
        ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error",
        "-f", "lavfi", "-i", f"testsrc=duration={seconds}:size={size}:rate={rate},noise=alls=30:allf=t",
        "-c:v", "libvpx", "-b:v", bitrate, "-minrate", bitrate, "-maxrate", bitrate,
        "-g", str(rate), "-keyint_min", str(rate), "-deadline", "realtime", "-cpu-used", "8",
        "-an", str(path),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return path
