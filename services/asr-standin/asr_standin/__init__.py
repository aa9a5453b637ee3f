"""STAND-IN for an OpenAI-compatible speech-to-text server: POST /v1/audio/transcriptions answers a scripted
transcript. A test double of a remote server (faster-whisper-server, vLLM's Whisper, FunASR), never of talker."""
