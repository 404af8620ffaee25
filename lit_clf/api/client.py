"""Chat completions from an OpenAI-compatible endpoint: bounded concurrency, retries, timeouts, a response cache.

Retries and timeouts are the ``openai`` client's own: rate limits (429), server errors (5xx), timeouts and lost
connections are retried ``max_retries`` times with exponential backoff and jitter, honouring the server's
``retry-after`` header. A request that still fails stops the run with one line; every answer received before it
is in the cache, so rerunning the same command resumes where it stopped.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from lit_clf.api.cache import ResponseCache, request_key

__all__ = ["ApiError", "ChatClient", "Completion"]

#: The placeholder key sent to servers that need none (``api_key_env: null``; local vLLM, llama.cpp, Ollama...).
NO_KEY = "no-key"
#: The endpoint a client without ``base_url`` talks to (part of every cache key).
OPENAI_ENDPOINT = "https://api.openai.com/v1"


class ApiError(ValueError):
    """A request failed after its retries, or the endpoint cannot be used as configured (a one-line CLI error)."""


@dataclass(frozen=True)
class Completion:
    """One answer: its text, the tokens the server counted (0 when it reports none) and whether it came from the
    cache (no request made, nothing paid)."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_key_env(name: str | None) -> None:
    """A one-line error unless ``api_key_env`` names an environment variable (letters, digits, ``_``; at most 64
    characters). A key given here by mistake would be written into config.yaml, hparams.yaml and W&B: it is refused
    before anything is written, and never echoed."""
    if name is None or (_ENV_NAME.fullmatch(name) and len(name) <= 64 and not name.startswith(("sk-", "sk_"))):
        return
    raise ValueError(
        "api_key_env: expected the NAME of an environment variable holding the key (e.g. OPENAI_API_KEY), got a "
        f"value of {len(name)} characters that is not one (the key itself?); it was not written anywhere. Put the "
        "key in an environment variable and give its name"
    )


class ChatClient:
    """Sends chat requests to ``{base_url}/chat/completions`` (the ``openai`` client), through a cache.

    Args:
        model: The model name the endpoint serves (``gpt-4o``, ``meta-llama/Meta-Llama-3-8B-Instruct``...).
        base_url: The endpoint, e.g. ``http://localhost:8000/v1``; unset: OpenAI's (or ``OPENAI_BASE_URL``).
        api_key_env: Environment variable holding the API key, read here and kept only by the ``openai`` client
            (never logged, saved or hashed into the cache). None: the endpoint needs no key.
        params: Request parameters besides model and messages (``temperature``, ``max_tokens``, ``seed``...);
            part of the cache key.
        concurrency: Most requests in flight at once.
        max_retries: Retries of a request on 429, 5xx, timeouts and connection errors.
        timeout: Seconds before one attempt times out.
        cache: Where answers are stored; None: no cache.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key_env: str | None = "OPENAI_API_KEY",
        params: Mapping[str, Any] | None = None,
        concurrency: int = 8,
        max_retries: int = 6,
        timeout: float = 60.0,
        cache: ResponseCache | None = None,
    ) -> None:
        check_key_env(api_key_env)
        if concurrency < 1:
            raise ValueError(f"concurrency: expected a positive number, got {concurrency}")
        if max_retries < 0 or timeout <= 0:
            raise ValueError(f"max_retries >= 0 and timeout > 0 expected, got {max_retries} and {timeout}")
        self.model = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.params = dict(params or {})
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.timeout = timeout
        self.cache = cache
        #: The model the server says it serves (its first answer's ``model``); cached answers of another are refetched.
        self.served_model: str | None = None
        #: HTTP requests sent, retries and resends included (more than the answers received: the server is slower
        #: than ``timeout`` at this ``concurrency``, or failing).
        self.attempts = 0
        self._lock = threading.Lock()
        self._client = None

    def _openai(self):
        if self._client is None:
            try:
                import openai
            except ImportError:
                raise ApiError("API models need the openai package: pip install 'lit_clf[api]'") from None
            key = NO_KEY
            if self.api_key_env:
                key = os.environ.get(self.api_key_env, "")
                if not key:
                    raise ApiError(
                        f"api_key_env: the environment variable {self.api_key_env} is not set (the key is read from "
                        "the environment only; for a server that needs none, set api_key_env to null)"
                    )
            import httpx

            # Every HTTP attempt is counted, the client's own retries and resends after a timeout included.
            http = httpx.Client(timeout=self.timeout, event_hooks={"request": [self._attempted]})
            self._client = openai.OpenAI(
                api_key=key,
                base_url=self.base_url,
                timeout=self.timeout,
                max_retries=self.max_retries,
                http_client=http,
            )
        return self._client

    def _attempted(self, request: Any) -> None:
        with self._lock:
            self.attempts += 1

    def complete(self, messages: Sequence[Mapping[str, str]], extra: Mapping[str, Any] | None = None) -> Completion:
        """One answer for ``messages``; ``extra`` parameters (a per-example response format) join ``params``."""
        params = {**self.params, **(extra or {})}
        key = request_key(self.model, messages, params, endpoint=self.base_url or OPENAI_ENDPOINT)
        if self.cache is not None and (entry := self.cache.get(key)) is not None and self._same_model(entry):
            return Completion(entry["text"], entry.get("prompt_tokens", 0), entry.get("completion_tokens", 0), True)
        client = self._openai()
        import openai

        try:
            response = client.chat.completions.create(model=self.model, messages=list(messages), **params)
        except openai.APIStatusError as err:
            retried = err.status_code in (408, 409, 429) or err.status_code >= 500
            after = f" after {self.max_retries} retries" if retried else ""
            raise ApiError(
                f"{self._where()}: HTTP {err.status_code}{after}: {_message(err)}{self._resume_hint()}"
            ) from None
        except (openai.APIConnectionError, openai.APITimeoutError) as err:
            raise ApiError(f"{self._where()}: {err} after {self.max_retries} retries{self._resume_hint()}") from None
        except (ValueError, openai.APIResponseValidationError) as err:  # a truncated or non-JSON body
            reason = (str(err).splitlines() or [type(err).__name__])[0][:120]
            raise ApiError(f"{self._where()}: answered with a body that is not a chat completion ({reason})") from None
        text = self._answer_text(response)
        served = getattr(response, "model", None)
        if isinstance(served, str) and served:
            self.served_model = self.served_model or served
        usage = response.usage
        completion = Completion(
            text,
            getattr(usage, "prompt_tokens", 0) or 0,
            getattr(usage, "completion_tokens", 0) or 0,
        )
        if self.cache is not None:
            entry = {"text": text, "prompt_tokens": completion.prompt_tokens}
            entry |= {"completion_tokens": completion.completion_tokens, "model": getattr(response, "model", None)}
            self.cache.put(key, entry)
        return completion

    def complete_all(
        self, requests: Sequence[Sequence[Mapping[str, str]]], extras: Sequence[Mapping[str, Any] | None] | None = None
    ) -> list[Completion]:
        """Answers in request order, at most ``concurrency`` requests in flight."""
        extras = list(extras) if extras is not None else [None] * len(requests)
        if self.concurrency == 1 or len(requests) <= 1:
            return [self.complete(messages, extra) for messages, extra in zip(requests, extras)]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self.complete, requests, extras))

    def _answer_text(self, response: Any) -> str:
        """The answer of a chat completion, or a one-line :class:`ApiError` for a response without one (no
        ``choices``, an empty list, no message): such a response is never cached."""
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list):
            kind = type(response).__name__
            raise ApiError(f"{self._where()}: answered with a body that is not a chat completion (a {kind})")
        message = getattr(choices[0], "message", None) if choices else None
        if message is None:
            raise ApiError(f"{self._where()}: answered without any choice (choices: {choices!r}); nothing was cached")
        return message.content or ""

    def _same_model(self, entry: Mapping[str, Any]) -> bool:
        """A cached entry serves only if the model its server named is the one this run's server names (known
        after the first answer received): a server that ignores the requested name and serves another model."""
        stored = entry.get("model")
        return not (stored and self.served_model and stored != self.served_model)

    def _where(self) -> str:
        return f"{self.base_url or 'the OpenAI API'} ({self.model})"

    def _resume_hint(self) -> str:
        if self.cache is None:
            return ""
        return f"; the answers received so far are cached in {self.cache.folder}: rerun to resume"


def _message(err: Exception) -> str:
    body = getattr(err, "body", None)
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and inner.get("message"):
            return str(inner["message"])
    return str(getattr(err, "message", err)).splitlines()[0]
