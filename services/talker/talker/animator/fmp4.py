"""Just enough ISO BMFF (MP4) box reading to cut a fragmented MP4 byte stream into its segments.

A fragmented MP4 is `ftyp` + `moov` (the init segment: codecs, no samples) followed by `moof` + `mdat`
pairs (media segments). A streaming response sends the init segment, then each media segment as soon as
ffmpeg has written it; knowing which segment carries the first video frame is what time-to-first-frame
measures. Only the boxes needed for that are parsed.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"moof", b"traf"}


class Mp4FormatError(ValueError):
    pass


@dataclass(frozen=True)
class Segment:
    """One piece of the stream as it is sent: the init segment, or one moof+mdat media segment."""

    data: bytes
    init: bool
    video_frames: int  # video samples in this segment (0 for the init segment)


def read_box(stream: BinaryIO) -> tuple[bytes, bytes] | None:
    """(type, whole box) of the next top-level box, or None at a clean end of stream."""
    header = _read_exact(stream, 8, allow_eof=True)
    if header is None:
        return None
    size, kind = struct.unpack(">I4s", header)
    if size == 1:
        large = _read_exact(stream, 8)
        assert large is not None
        size = struct.unpack(">Q", large)[0]
        header += large
    if size < len(header):  # 0 ("to the end of the file") never occurs in a fragmented stream
        raise Mp4FormatError(f"box {kind!r} has an invalid size {size}")
    body = _read_exact(stream, size - len(header))
    assert body is not None
    return kind, header + body


def _read_exact(stream: BinaryIO, n: int, *, allow_eof: bool = False) -> bytes | None:
    data = stream.read(n)
    if allow_eof and not data:
        return None
    if len(data) != n:
        raise Mp4FormatError(f"stream ended inside a box ({len(data)} of {n} bytes)")
    return data


def children(payload: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(type, body) of each box inside a container's payload."""
    pos = 0
    while pos + 8 <= len(payload):
        size, kind = struct.unpack_from(">I4s", payload, pos)
        start = pos + 8
        if size == 1:
            size = struct.unpack_from(">Q", payload, start)[0]
            start += 8
        if size < start - pos or pos + size > len(payload):
            raise Mp4FormatError(f"box {kind!r} overruns its container")
        yield kind, payload[start:pos + size]
        pos += size


def find(payload: bytes, *path: bytes) -> list[bytes]:
    """Bodies of every box at `path` below `payload` (e.g. find(moov_body, b"trak", b"tkhd"))."""
    found = [payload]
    for step in path:
        found = [body for parent in found for kind, body in children(parent) if kind == step]
    return found


def video_track_id(moov: bytes) -> int:
    """Track id of the (first) video track of an init segment's moov box (whole box)."""
    for trak in find(moov[8:], b"trak"):
        handlers = find(trak, b"mdia", b"hdlr")
        if handlers and handlers[0][8:12] == b"vide":
            tkhd = find(trak, b"tkhd")[0]
            offset = 20 if tkhd[0] == 1 else 12  # version 1 has 64-bit times
            return int(struct.unpack_from(">I", tkhd, offset)[0])
    raise Mp4FormatError("the init segment has no video track")


def samples_per_track(moof: bytes) -> dict[int, int]:
    """{track id: sample count} of one moof box (whole box)."""
    counts: dict[int, int] = {}
    for traf in find(moof[8:], b"traf"):
        tfhd = find(traf, b"tfhd")[0]
        track = int(struct.unpack_from(">I", tfhd, 4)[0])
        counts[track] = counts.get(track, 0) + sum(int(struct.unpack_from(">I", trun, 4)[0])
                                                   for trun in find(traf, b"trun"))
    return counts


def avc_codec_string(moov: bytes) -> str:
    """RFC 6381 codec of the video track, e.g. "avc1.42C01E" (profile, constraint flags, level from avcC)."""
    for entry in find(moov[8:], b"trak", b"mdia", b"minf", b"stbl", b"stsd"):
        # stsd: version/flags (4), entry count (4), then sample entries; avc1 entry: 78 bytes before its boxes.
        for kind, sample_entry in children(entry[8:]):
            if kind == b"avc1":
                for child_kind, body in children(sample_entry[78:]):
                    if child_kind == b"avcC":
                        return f"avc1.{body[1]:02X}{body[2]:02X}{body[3]:02X}"
    raise Mp4FormatError("the init segment has no avc1/avcC sample entry")


def segments(stream: BinaryIO) -> Iterator[Segment]:
    """Group a fragmented MP4 byte stream into its init segment and its moof+mdat media segments."""
    pending: list[bytes] = []
    video_track: int | None = None
    frames = 0
    while (box := read_box(stream)) is not None:
        kind, data = box
        if kind == b"moov":
            video_track = video_track_id(data)
            yield Segment(b"".join(pending) + data, init=True, video_frames=0)
            pending = []
        elif kind == b"moof":
            if video_track is None:
                raise Mp4FormatError("moof before moov: not a fragmented MP4 with an empty moov")
            frames = samples_per_track(data).get(video_track, 0)
            pending.append(data)
        elif kind == b"mdat" and video_track is not None:
            yield Segment(b"".join(pending) + data, init=False, video_frames=frames)
            pending, frames = [], 0
        else:  # ftyp, styp, sidx...: sent along with the segment that follows
            pending.append(data)
    if pending:
        raise Mp4FormatError(f"stream ended after {len(pending)} unpaired box(es)")
