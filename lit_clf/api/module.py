"""ChatApiModule: chat models behind an OpenAI-compatible API (the paper's GPT rows), evaluated like the decoders."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.utilities import rank_zero_warn

from lit_clf.api.cache import ResponseCache
from lit_clf.api.client import ChatClient, Completion, check_key_env
from lit_clf.api.features import ApiFeaturizer
from lit_clf.api.schema import response_format
from lit_clf.data.tasks import Example
from lit_clf.module import TaskModule, default_optimizer
from lit_clf.prompting.answers import AnswerStyle, parse_answer
from lit_clf.prompting.encoding import ShotsDraw
from lit_clf.prompting.scoring import prediction_rows, update_answer_metrics

__all__ = ["ChatApiModule"]

#: Usage counters logged per stage as ``{stage}/api_<name>``.
USAGE = ("requests", "attempts", "cache_hits", "prompt_tokens", "completion_tokens", "cost_usd")


class ChatApiModule(TaskModule):
    """A chat model behind an OpenAI-compatible ``/chat/completions`` endpoint, asked with the decoder module's
    prompts (the paper's Listings, a prompt file or the generic prompt; zero- or five-shot; one task or the
    consolidated JSON answer) and scored with its parsers and metrics, invalid rates included. For ``lit-clf test``
    and ``predict`` only: nothing is trained.

    Every answer is cached on disk by (model, messages, request parameters): a rerun costs nothing and a run
    stopped half-way resumes without repeating paid calls. Token usage and its cost are logged beside the scores.
    """

    counts_invalid = True
    generative = True

    def __init__(
        self,
        backbone: str,
        tasks: list[dict[str, Any]] | None = None,
        base_url: str | None = None,
        api_key_env: str | None = "OPENAI_API_KEY",
        shots: int = 0,
        shots_draw: ShotsDraw = "per_example",
        prompt_file: str | None = None,
        prompt_style: AnswerStyle | None = None,
        label_descriptions: dict[str, dict[str, str]] | None = None,
        temperature: float = 0.0,
        max_tokens: int | None = 512,
        seed: int | None = None,
        structured_output: bool = False,
        concurrency: int = 8,
        max_retries: int = 6,
        timeout: float = 60.0,
        cache_dir: str | None = "~/.cache/lit_clf/api",
        prices: dict[str, float] | None = None,
    ) -> None:
        """
        Args:
            backbone: The model name the endpoint serves (``gpt-4o``, ``gpt-3.5-turbo-0125``, or a local server's
                ``meta-llama/Meta-Llama-3-8B-Instruct``).
            tasks: Task specs (name, kind, labels). Linked from the DataModule by the CLI.
            base_url: The endpoint (``http://localhost:8000/v1`` for vLLM); unset: OpenAI's (or ``OPENAI_BASE_URL``).
            api_key_env: The environment variable holding the API key. The key is read from the environment only,
                never from a config, and is never logged, saved or part of the cache. ``null``: no key needed.
            shots: Few-shot examples per prompt, drawn from the DataModule's training split (0 or 5 in the paper).
            shots_draw: ``per_example`` (the paper) or ``fixed`` few-shot draws.
            prompt_file: A prompt template file instead of the paper's prompt or the generic one.
            prompt_style: Answer style of the generic prompt (``serial`` or ``json``; unset: serial for one task,
                json for several).
            label_descriptions: Generic prompt only: ``{task: {label: description}}``.
            temperature: Sampling temperature; 0 is greedy (the default; the paper's GPT rows).
            max_tokens: Most tokens per answer (``max_tokens``); null: the server's limit.
            seed: Sampling seed, for servers that take one.
            structured_output: Ask the server for JSON restricted to the label sets (a JSON schema with enums; the
                API counterpart of constrained decoding). Needs a json answer (``prompt_style: json``, or several
                tasks) and a server that supports ``response_format`` with ``json_schema``.
            concurrency: Most requests in flight at once.
            max_retries: Retries of a request on rate limits (429), server errors (5xx), timeouts and lost
                connections, with exponential backoff (the openai client's, honouring ``retry-after``).
            timeout: Seconds before an attempt times out.
            cache_dir: Folder of the response cache; null: no cache (every run pays again).
            prices: USD per million tokens, ``{input: 2.5, output: 10.0}``, for the logged ``api_cost_usd``; unset:
                the cost is not logged.
        """
        super().__init__()
        check_key_env(api_key_env)  # before the hyperparameters keep it: a key given here must not be written
        self.save_hyperparameters()
        self.init_tasks(tasks, default_optimizer, None)
        if prices is not None and (set(prices) != {"input", "output"} or min(prices.values()) < 0):
            raise ValueError(f"prices: expected {{input: USD per 1M tokens, output: USD per 1M tokens}}, got {prices}")
        self.featurizer = ApiFeaturizer(self.tasks, shots, prompt_file, prompt_style, label_descriptions, shots_draw)
        if structured_output and self.featurizer.template.style != "json":
            raise ValueError(
                f"structured_output: {self.featurizer.template.source} answers in plain text; it needs a json answer: "
                "several tasks, or a prompt file with `style: json` (a copy of the paper's prompt with that line), or "
                "the generic prompt (datasets without paper prompts) with prompt_style: json"
            )
        params: dict[str, Any] = {"temperature": temperature}
        params |= {"max_tokens": max_tokens} if max_tokens is not None else {}
        params |= {"seed": seed} if seed is not None else {}
        cache = ResponseCache(cache_dir) if cache_dir else None
        self.client = ChatClient(backbone, base_url, api_key_env, params, concurrency, max_retries, timeout, cache)
        self._reset_usage()

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: dict[str, Any], batch_idx: int):
        raise ValueError("API models answer as they are: use lit-clf test or predict, not fit")

    def configure_optimizers(self):
        raise ValueError("API models answer as they are: use lit-clf test or predict, not fit")

    def answers(self, batch: dict[str, Any]) -> tuple[list[str], list[dict]]:
        """The raw answer text and the parsed answers per task of each row of a batch."""
        template, tasks = self.featurizer.template, self.featurizer.answer_tasks
        keys = template.keys or None
        extras = None
        if self.hparams.structured_output:
            token = any(task.kind == "token" for task in tasks)
            extras = [
                {"response_format": response_format(tasks, template.keys, n if token else None, template.token_format)}
                for n in batch["num_words"]
            ]
        completions = self.client.complete_all(batch["messages"], extras)
        self._count(completions)
        texts = [completion.text for completion in completions]
        parsed = [
            parse_answer(text, tasks, keys, n, template.style, template.token_format)
            for text, n in zip(texts, batch["num_words"])
        ]
        return texts, parsed

    def _evaluate(self, batch: dict[str, Any], stage: str) -> list[dict[str, Any]]:
        texts, parsed = self.answers(batch)
        update_answer_metrics(self.metrics[stage], self.tasks, parsed, batch["gold"], self.device)
        self.log_metrics(stage, len(texts))
        return prediction_rows(batch["index"].tolist(), texts, parsed) if stage == "test" else []

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """Per example and task: the prediction (``None``/best effort when invalid), the raw text and validity."""
        texts, parsed = self.answers(batch)
        return prediction_rows(batch["index"].tolist(), texts, parsed)

    def prompt_shots(self, example: Example) -> list[Example]:
        """The few-shot examples of ``example``'s prompt, drawn from the DataModule's training split; none
        zero-shot."""
        return self.featurizer.shots_for(example)

    # ------------------------------------------------------------------ usage
    def _count(self, completions: list[Completion]) -> None:
        for completion in completions:
            self.usage["cache_hits" if completion.cached else "requests"] += 1
            if not completion.cached:  # a cached answer was paid for by an earlier run
                self.usage["prompt_tokens"] += completion.prompt_tokens
                self.usage["completion_tokens"] += completion.completion_tokens
        prices = self.hparams.prices
        if prices:
            self.usage["cost_usd"] = (
                self.usage["prompt_tokens"] * prices["input"] + self.usage["completion_tokens"] * prices["output"]
            ) / 1e6

    def _reset_usage(self) -> None:
        self.usage = dict.fromkeys(USAGE, 0.0)
        self._attempts_before = self.client.attempts

    def _log_usage(self, stage: str) -> None:
        self.usage["attempts"] = float(self.client.attempts - getattr(self, "_attempts_before", 0))
        resent = self.usage["attempts"] - self.usage["requests"]
        if resent > 0:
            rank_zero_warn(
                f"{stage}: {int(self.usage['attempts'])} requests sent for {int(self.usage['requests'])} answers "
                f"({int(resent)} retried after an error or resent after a {self.client.timeout:g} s timeout; a server "
                "may have worked on each, and a paid API billed them): size model.init_args.concurrency to the "
                "server's parallel slots (llama.cpp --parallel, vLLM --max-num-seqs) or raise model.init_args.timeout"
            )
        names = USAGE if self.hparams.prices else USAGE[:-1]
        self.log_dict({f"{stage}/api_{name}": float(self.usage[name]) for name in names}, reduce_fx="sum")

    def on_validation_epoch_start(self) -> None:
        self._reset_usage()

    def on_test_epoch_start(self) -> None:
        self._reset_usage()

    def on_validation_epoch_end(self) -> None:
        self._log_usage("val")

    def on_test_epoch_end(self) -> None:
        self._log_usage("test")
