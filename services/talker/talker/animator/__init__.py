"""Talking-head animator: portraits, per-frame mouth openness, a torch mouth warp and MP4 encoding.

No HTTP or metrics here; the pipeline wires it to the TTS engines.
"""
