"""talker: text -> speech -> talking-head video, instrumented for Prometheus."""

__version__ = "0.1.0"
