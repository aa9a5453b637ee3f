"""The LLM stage: a streaming client for any OpenAI-compatible chat-completions server.

    client = LLMClient(LLMConfig.from_settings(settings), on_result=metrics.observe_llm_result)
    async with client.stream(history + [{"role": "user", "content": text}]) as reply:
        async for delta in reply:        # text deltas, in order, never empty
            ...                          # LLMError when the stage fails (reply.result says how)
    reply.result                         # LLMResult: outcome, text, TTFT, token counts, duration

Leaving the `async with` early (barge-in) or cancelling the task closes the HTTP stream at once and records
the outcome "cancelled". There are no retries (max_retries=0): a failed answer costs money and time, and the
caller tells the user instead. Plain module: it knows nothing of HTTP routes or Prometheus; `on_result` is
called once per request with the final LLMResult (the composition root hands it to the metrics).

Fault injection (`faults=`, the service's FaultInjector, switched by POST /admin/faults): llm_extra_latency_ms
is waited before the request is sent, so it lands in the time to first token (a wait past TALKER_LLM_TIMEOUT_S
ends as a timeout, as a real slow server would); llm_error_rate answers a request with an injected
upstream_error (HTTP 500, no request sent). Both are counted like the real thing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from talker.faults import FaultInjector
    from talker.settings import Settings

log = logging.getLogger("talker.llm")

ChatMessage = dict[str, str]  # {"role": "user" | "assistant" | "system", "content": text}


class LLMOutcome(StrEnum):
    """How one LLM request ended: the `outcome` label of talker_llm_requests_total."""

    COMPLETED = "completed"  # the server said finish_reason (stop, or length at max tokens)
    CANCELLED = "cancelled"  # the caller stopped reading (barge-in, the user went away)
    TIMEOUT = "timeout"  # no connection, first token or next token within TALKER_LLM_TIMEOUT_S
    CONNECTION_ERROR = "connection_error"  # nothing answered at TALKER_LLM_BASE_URL
    UPSTREAM_ERROR = "upstream_error"  # an HTTP error status (401, 429, 5xx ...) or an error in the stream
    STREAM_CUT = "stream_cut"  # the stream broke off before the server said it was finished


LLM_OUTCOMES: tuple[str, ...] = tuple(outcome.value for outcome in LLMOutcome)
# Outcomes that are the upstream's failure (what an alert on the LLM stage counts); cancelled is the user's doing.
LLM_FAILURES: tuple[str, ...] = ("timeout", "connection_error", "upstream_error", "stream_cut")


@dataclass(frozen=True)
class LLMConfig:
    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    system_prompt: str = ""
    max_tokens: int = 256
    timeout_s: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> LLMConfig:
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key is not None else None
        return cls(
            base_url=settings.llm_base_url,
            model=settings.llm_model,
            api_key=key or None,
            system_prompt=settings.llm_system_prompt,
            max_tokens=settings.llm_max_tokens,
            timeout_s=settings.llm_timeout_s,
        )


@dataclass
class LLMResult:
    """What one request produced. Filled while streaming; final once `outcome` is set."""

    outcome: LLMOutcome | None = None
    text: str = ""
    finish_reason: str | None = None  # "stop", "length", ... as the server said
    time_to_first_token_s: float | None = None  # request sent -> first non-empty content delta
    duration_s: float = 0.0
    prompt_tokens: int | None = None  # from the usage chunk; None when the server sent none
    completion_tokens: int | None = None  # from the usage chunk, else the number of content deltas received
    deltas: int = 0
    status_code: int | None = None  # the HTTP status of an upstream_error
    detail: str = ""  # a short reason for a failure, safe to show and log (no key, no user text)


class LLMError(Exception):
    """The LLM stage failed; `result` says how (its outcome is never completed or cancelled)."""

    def __init__(self, result: LLMResult) -> None:
        super().__init__(f"LLM {result.outcome}: {result.detail}")
        self.result = result


class LLMClient:
    def __init__(
        self,
        config: LLMConfig,
        *,
        on_result: Callable[[LLMResult], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        faults: FaultInjector | None = None,
    ) -> None:
        self.config = config
        self.on_result = on_result
        self.clock = clock
        self.faults = faults
        # Imported here: the SDK takes 0.6 s to import, and the metrics module imports this one's outcomes.
        import openai

        timeout = openai.Timeout(config.timeout_s, connect=min(config.timeout_s, 10.0))
        self._openai = openai.AsyncOpenAI(
            base_url=config.base_url,
            # The SDK insists on a key; servers without auth ignore this placeholder.
            api_key=config.api_key or "not-needed",
            timeout=timeout,
            max_retries=0,
        )

    def messages(self, conversation: Sequence[ChatMessage]) -> list[ChatMessage]:
        """The system prompt (when set) followed by the conversation."""
        system = [{"role": "system", "content": self.config.system_prompt}] if self.config.system_prompt else []
        return [*system, *({"role": m["role"], "content": m["content"]} for m in conversation)]

    def stream(self, conversation: Sequence[ChatMessage]) -> LLMStream:
        """One streamed answer to `conversation` (history and the new user message, no system prompt)."""
        return LLMStream(self, self.messages(conversation))

    async def aclose(self) -> None:
        await self._openai.close()


class LLMStream:
    """Async iterator of text deltas and async context manager; `result` is final after it closes."""

    def __init__(self, client: LLMClient, messages: list[ChatMessage]) -> None:
        self._client = client
        self._messages = messages
        self.result = LLMResult()
        self._gen = self._run()
        self._reported = False

    def __aiter__(self) -> AsyncIterator[str]:
        return self._gen

    async def __aenter__(self) -> LLMStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._gen.aclose()
        if self.result.outcome is None:  # closed before it started
            self.result.outcome = LLMOutcome.CANCELLED
        self._report()

    def _report(self) -> None:
        if self._reported:
            return
        self._reported = True
        result = self.result
        log.info(
            "llm request",
            extra={"llm": {
                "outcome": str(result.outcome), "model": self._client.config.model,
                "ttft_s": None if result.time_to_first_token_s is None else round(result.time_to_first_token_s, 4),
                "duration_s": round(result.duration_s, 4), "prompt_tokens": result.prompt_tokens,
                "completion_tokens": result.completion_tokens, "status": result.status_code,
                "detail": result.detail,
            }},
        )
        if self._client.on_result is not None:
            self._client.on_result(result)

    def _fail(self, outcome: LLMOutcome, detail: str, status: int | None = None) -> LLMError:
        self.result.outcome, self.result.detail, self.result.status_code = outcome, detail, status
        return LLMError(self.result)

    async def _injected_faults(self) -> None:
        """The llm_* faults of /admin/faults, before the request: a wait, then maybe an upstream error."""
        faults, timeout_s = self._client.faults, self._client.config.timeout_s
        if faults is None:
            return
        delay = faults.llm_extra_latency_s
        if delay >= timeout_s:
            await asyncio.sleep(timeout_s)
            raise self._fail(LLMOutcome.TIMEOUT, f"no answer from the LLM within {timeout_s:g} s (injected latency)")
        if delay > 0:
            await asyncio.sleep(delay)
        if faults.should_fail_llm():
            raise self._fail(LLMOutcome.UPSTREAM_ERROR, "injected LLM fault (llm_error_rate, POST /admin/faults)",
                             500)

    async def _run(self) -> AsyncIterator[str]:
        import openai

        client, config, result = self._client, self._client.config, self.result
        started = client.clock()
        streaming = False
        try:
            try:
                await self._injected_faults()
                stream = await client._openai.chat.completions.create(
                    model=config.model,
                    messages=self._messages,  # type: ignore[arg-type]
                    stream=True,
                    stream_options={"include_usage": True},
                    max_tokens=config.max_tokens,
                )
                streaming = True
                async with stream:
                    async for chunk in stream:
                        if chunk.usage is not None:
                            result.prompt_tokens = chunk.usage.prompt_tokens
                            result.completion_tokens = chunk.usage.completion_tokens
                        for choice in chunk.choices:
                            if choice.finish_reason is not None:
                                result.finish_reason = choice.finish_reason
                            text = choice.delta.content if choice.delta is not None else None
                            if text:
                                if result.time_to_first_token_s is None:
                                    result.time_to_first_token_s = client.clock() - started
                                result.deltas += 1
                                result.text += text
                                yield text
            # The SDK wraps its HTTP library's errors, also those raised while the stream is read.
            except openai.APITimeoutError:
                raise self._fail(LLMOutcome.TIMEOUT, f"no answer from the LLM within {config.timeout_s:g} s") from None
            except openai.APIStatusError as exc:
                raise self._fail(LLMOutcome.UPSTREAM_ERROR, f"the LLM server answered HTTP {exc.status_code}",
                                 exc.status_code) from None
            except openai.APIConnectionError:
                if streaming:
                    raise self._fail(LLMOutcome.STREAM_CUT, "the LLM stream broke off") from None
                raise self._fail(LLMOutcome.CONNECTION_ERROR, "cannot reach the LLM server") from None
            except openai.APIError:
                raise self._fail(LLMOutcome.UPSTREAM_ERROR, "the LLM server sent an error in the stream") from None
            if result.finish_reason is None:
                raise self._fail(LLMOutcome.STREAM_CUT, "the LLM stream ended without a finish reason")
            result.outcome = LLMOutcome.COMPLETED
        except (GeneratorExit, asyncio.CancelledError):
            if result.outcome is None:  # closed early (barge-in) or the task was cancelled
                result.outcome = LLMOutcome.CANCELLED
            raise
        except LLMError:
            raise
        except Exception as exc:  # an answer the SDK could not read (malformed chunk): the upstream's doing
            raise self._fail(LLMOutcome.UPSTREAM_ERROR, "unreadable answer from the LLM server") from exc
        finally:
            result.duration_s = client.clock() - started
            if result.completion_tokens is None and result.deltas:
                result.completion_tokens = result.deltas
            self._report()


def usage_summary(result: LLMResult) -> dict[str, Any]:
    """The timings/tokens of a result as plain JSON (for a turn_end event or a log line)."""
    return {
        "outcome": str(result.outcome),
        "time_to_first_token_s": result.time_to_first_token_s,
        "duration_s": result.duration_s,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "finish_reason": result.finish_reason,
    }
