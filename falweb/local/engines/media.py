"""Short synthetic video and audio clips for the preview engine: deterministic, labelled.

Video is H.264 in MP4 (what fal's video endpoints answer), encoded with PyAV at a small size
and a low frame rate so that a five-second clip costs a fraction of a second. Audio is 16-bit
mono WAV written with the standard library's :mod:`wave`.
"""

import io
import math
import struct
import wave

from PIL import ImageDraw

#: Frames per second of synthetic clips: enough to see motion, cheap to encode.
VIDEO_FPS = 8
#: Longest synthetic clip, whatever the input asks for.
MAX_SECONDS = 20
AUDIO_RATE = 16_000

#: Frame size by fal's aspect-ratio names (even sides, as H.264 needs).
VIDEO_SIZES = {"16:9": (320, 180), "9:16": (180, 320), "1:1": (240, 240), "4:3": (320, 240),
               "3:4": (240, 320), "21:9": (420, 180)}


def seconds_of(input, default=5.0):
    """The clip length an input asks for (``duration`` as fal spells it: "5", 5, "5s")."""
    value = input.get("duration", input.get("num_seconds", default))
    try:
        seconds = float(str(value).rstrip("s"))
    except ValueError:
        seconds = default
    return max(0.5, min(seconds, MAX_SECONDS))


def video_mp4(first_frame, seconds, label):
    """(bytes, width, height, frames) of an MP4 clip panning over ``first_frame`` (a PIL
    image of the clip's size) with ``label`` drawn on every frame."""
    import av

    width, height = first_frame.size
    frames = max(1, int(round(seconds * VIDEO_FPS)))
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=VIDEO_FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            frame = first_frame.copy()
            draw = ImageDraw.Draw(frame)
            # A bar sweeping across: visibly moving, deterministic.
            x = int((index / max(frames - 1, 1)) * (width - 8))
            draw.rectangle((x, 0, x + 8, height), fill=(255, 255, 255))
            draw.text((6, 6), f"{label}  {index + 1}/{frames}", fill=(255, 255, 255))
            for packet in stream.encode(av.VideoFrame.from_image(frame)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue(), width, height, frames


def audio_wav(seconds, seed):
    """Bytes of a WAV clip: a chord of two tones picked from ``seed``, fading in and out."""
    low = 220 + seed % 220
    high = low * 1.5
    count = int(seconds * AUDIO_RATE)
    fade = max(1, AUDIO_RATE // 20)
    samples = bytearray()
    for n in range(count):
        t = n / AUDIO_RATE
        envelope = min(1.0, n / fade, (count - n) / fade)
        value = 0.3 * envelope * (math.sin(2 * math.pi * low * t)
                                  + math.sin(2 * math.pi * high * t))
        samples += struct.pack("<h", int(value * 32767 / 2))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(AUDIO_RATE)
        out.writeframes(bytes(samples))
    return buffer.getvalue()
