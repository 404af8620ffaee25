"""DecoderGenerativeModule: a causal LM fine-tuned to write the answer after a classification prompt.

Training is next-token cross-entropy on the answer tokens (and EOS) only: the prompt's labels are -100 (the data
layer's mask, :mod:`lit_clf.data.decoder_features`). Evaluation generates an answer per prompt and reads it back
with :mod:`lit_clf.answers`; an answer that names no label counts as wrong and in ``{stage}/{task}_invalid_rate``.
Three ways to read the answer (``decoding``): free greedy generation, greedy generation constrained to valid
answers, or label scoring (the most likely label among all of them, sequence tasks only), the last two from
:mod:`lit_clf.generation`.

The transformers model is built in :meth:`DecoderGenerativeModule.configure_model`, so Lightning can shard it:
under FSDP on several devices only rank 0 reads the pretrained weights, the other ranks build the model on the
meta device, and FSDP broadcasts rank 0's weights while it shards (``sync_module_states``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from contextlib import nullcontext
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.strategies import FSDPStrategy
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from lit_clf.answers import ParsedAnswer, render_answer
from lit_clf.data.decoder_features import DecoderFeaturizer, prompt_dataset
from lit_clf.data.prompts import IGNORE_INDEX, PROMPT_FORMATS, PromptFormat, get_template
from lit_clf.data.tasks import OTHER, Example, TaskSpec
from lit_clf.metrics import Accuracy, InvalidRate, SlotExactMatch, SlotF1
from lit_clf.models.common import TaskModule, coerce_tasks

STAGES = ("val", "test")
DECODINGS = ("free", "constrained", "score")
#: Trainer precision -> dtype the weights are loaded in when ``torch_dtype`` is unset (others: float32).
PRECISION_DTYPES = {"bf16-true": torch.bfloat16, "16-true": torch.float16}

Decoding = Literal["free", "constrained", "score"]
TorchDtype = Literal["auto", "float32", "bfloat16", "float16"]


def default_optimizer(params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """AdamW with the paper's decoder learning rate (1e-6, no warm-up); configs normally set their own."""
    return torch.optim.AdamW(params, lr=1e-6)


class DecoderGenerativeModule(TaskModule):
    """Any ``AutoModelForCausalLM`` (Llama 2/3 in the paper) trained and evaluated on classification prompts.

    One task is single-task; several share one prompt whose answer is the paper's JSON object (the consolidated
    model). Full fine-tuning by default; ``lora`` trains LoRA adapters instead and ``load_in_4bit`` makes it QLoRA.
    """

    def __init__(
        self,
        model: str = "meta-llama/Meta-Llama-3-8B",
        tasks: list[dict[str, Any]] | None = None,
        tokenizer: str | None = None,
        pretrained: bool = True,
        prompt_format: PromptFormat = "llama2",
        shots: int = 0,
        prompt_file: str | None = None,
        max_length: int = 16384,
        max_new_tokens: int | None = None,
        decoding: Decoding = "free",
        length_normalization: Literal["none", "mean"] = "none",
        candidates_per_pass: int = 64,
        lora: dict[str, Any] | None = None,
        load_in_4bit: bool = False,
        torch_dtype: TorchDtype | None = None,
        gradient_checkpointing: bool = False,
        optimizer: OptimizerCallable = default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        """
        Args:
            model: Hub id or local folder of any ``AutoModelForCausalLM`` (``meta-llama/Meta-Llama-3-8B``,
                ``meta-llama/Llama-2-7b-chat-hf``, ``HuggingFaceTB/SmolLM2-135M-Instruct``). No remote code.
            tasks: Task specs (name, kind, labels). Linked from the DataModule by the CLI.
            tokenizer: Hub id or folder of the tokenizer; unset uses ``model``.
            pretrained: Load pretrained weights. ``false`` builds the architecture from the model's config with
                random weights (tests, throughput work).
            prompt_format: How the prompt is wrapped: ``llama2`` (``<s>[INST] prompt [/INST] answer </s>``, the
                paper's format, also for Llama 3 base models), ``chat`` (the tokenizer's chat template; instruct
                models) or ``raw`` (the prompt text, then the answer).
            shots: Few-shot examples per prompt, drawn from the DataModule's training split (0 or 5 with the
                paper's prompts).
            prompt_file: A prompt template file (text, or YAML/JSON with ``prompt``, ``system``, ``shot``,
                ``keys``; see ``lit_clf.data.prompts``) instead of the paper's prompt for the dataset and tasks.
            max_length: Most tokens of prompt + answer (16,384 in the paper); long texts are cut to fit.
            max_new_tokens: Most tokens generated per answer. Unset: per example, the longest answer the task
                set can produce for its input (each sequence task's longest label, each token task's longest
                label once per input word) + EOS + 4; ``constrained`` decoding uses the exact longest valid answer.
            decoding: How answers are read in validation/test/predict: ``free`` (greedy generation, parsed),
                ``constrained`` (greedy generation allowed only valid answers: no invalid output) or ``score``
                (the most likely label, or label combination for several tasks; sequence tasks only; all
                candidates in one pass over the prompt's KV cache, which needs ``sdpa`` or ``eager`` attention).
            length_normalization: ``score`` decoding: rank answers by their summed token log-probabilities
                (``none``) or by the mean per token (``mean``).
            candidates_per_pass: ``score`` decoding: answers scored per pass over the prompts' KV cache. Each pass
                holds eval batch x distinct answer prefixes x vocabulary logits in float32: lower it if they do
                not fit (20NG consolidated with Llama 3: 140 label pairs, a 128k vocabulary).
            lora: LoRA adapters instead of full fine-tuning: ``peft.LoraConfig`` arguments, e.g.
                ``{r: 16, lora_alpha: 32, lora_dropout: 0.05, target_modules: all-linear}``.
            load_in_4bit: QLoRA: load the base weights in 4-bit NF4 (bitsandbytes; needs a CUDA GPU and ``lora``).
            torch_dtype: Dtype to load the weights in (``bfloat16``, ``float16``, ``float32``, ``auto`` = the
                checkpoint's). Unset: bfloat16 under ``precision: bf16-true``, float16 under ``16-true``, else
                float32 (mixed precision keeps float32 master weights).
            gradient_checkpointing: Recompute activations in the backward pass (transformers' own checkpointing).
                Under FSDP use the strategy's ``activation_checkpointing_policy`` instead.
            optimizer: Optimizer class and arguments (default AdamW, lr 1e-6, as in the paper);
                ``bitsandbytes.optim.AdamW8bit`` or ``PagedAdamW`` save memory.
            lr_scheduler: Optional learning-rate scheduler, stepped every optimizer step (the paper: none).
        """
        super().__init__()
        self.save_hyperparameters()
        self.tasks = coerce_tasks(tasks, type(self).__name__)
        self.hparams["tasks"] = [task.to_dict() for task in self.tasks]  # plain data in checkpoints
        _check_options(
            self.tasks, prompt_format, shots, prompt_file, decoding, candidates_per_pass, lora, load_in_4bit, pretrained
        )
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer or model)
        self.featurizer = DecoderFeaturizer(
            self.tokenizer,
            self.tasks,
            prompt_format=prompt_format,
            shots=shots,
            prompt_file=prompt_file,
            max_length=max_length,
            max_new_tokens=max_new_tokens,
            datamodule=self._attached_datamodule,
        )
        self.model: nn.Module | None = None  # built in configure_model
        self.metrics = nn.ModuleDict({stage: self._task_metrics() for stage in STAGES})
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler

    def _task_metrics(self) -> nn.ModuleDict:
        metrics = nn.ModuleDict()
        for task in self.tasks:
            if task.kind == "sequence":
                metrics[task.name] = nn.ModuleDict({"acc": Accuracy(), "invalid_rate": InvalidRate()})
            else:
                labels = list(task.labels)
                metrics[task.name] = nn.ModuleDict(
                    {"f1": SlotF1(labels), "exact_match": SlotExactMatch(labels), "invalid_rate": InvalidRate()}
                )
        return metrics

    def _attached_datamodule(self):
        """The DataModule of the trainer this module runs in (the few-shot pool and dataset name), or None."""
        return getattr(self._trainer, "datamodule", None) if self._trainer is not None else None

    # ------------------------------------------------------------------ model
    def configure_model(self) -> None:
        """Build the transformers model once (Lightning calls this before sharding, and on checkpoint load)."""
        if self.model is not None:
            return
        model = self._load_model()
        if self.hparams.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if self.hparams.load_in_4bit:
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=self.hparams.gradient_checkpointing
            )
        if self.hparams.lora is not None:
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **self.hparams.lora))
        self.model = model.train()  # from_pretrained returns eval mode; Lightning keeps submodules' modes

    def _load_model(self) -> nn.Module:
        name, dtype = self.hparams.model, self._weights_dtype()
        if self.hparams.load_in_4bit:
            return AutoModelForCausalLM.from_pretrained(name, **self._4bit_kwargs(dtype))
        # A rank > 0 under FSDP builds shapes only (meta tensors): its weights come from rank 0.
        empty = self.hparams.pretrained and self._rank0_loads_for_fsdp() and self.global_rank > 0
        if self.hparams.pretrained and not empty:
            return AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
        config = AutoConfig.from_pretrained(name)
        with torch.device("meta") if empty else nullcontext():
            return AutoModelForCausalLM.from_config(config, dtype=None if dtype == "auto" else dtype)

    def _weights_dtype(self) -> torch.dtype | str:
        if self.hparams.torch_dtype is not None:
            name = self.hparams.torch_dtype
            return name if name == "auto" else getattr(torch, name)
        precision = str(self._trainer.precision) if self._trainer is not None else "32-true"
        return PRECISION_DTYPES.get(precision, torch.float32)

    def _4bit_kwargs(self, dtype: torch.dtype | str) -> dict[str, Any]:
        if not torch.cuda.is_available():
            raise RuntimeError("load_in_4bit: bitsandbytes 4-bit (QLoRA) loading needs a CUDA GPU; none is visible")
        from transformers import BitsAndBytesConfig

        compute = dtype if dtype in (torch.bfloat16, torch.float16) else torch.bfloat16
        quantization = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute
        )
        device = self._trainer.strategy.root_device if self._trainer is not None else torch.device("cuda")
        return {"quantization_config": quantization, "dtype": compute, "device_map": {"": device}}

    def _rank0_loads_for_fsdp(self) -> bool:
        """Under FSDP on several devices: only rank 0 reads the weights, FSDP broadcasts them while sharding.

        Saves (world size - 1) copies of the model in host memory (7 x 280 GB for a 70B model in float32). Sets
        the strategy's ``sync_module_states`` and a ``param_init_fn`` that allocates the meta tensors of ranks > 0
        (the strategy's options are read when it wraps the model, after this hook).
        """
        trainer = self._trainer
        if trainer is None or not isinstance(trainer.strategy, FSDPStrategy) or trainer.world_size < 2:
            return False
        strategy = trainer.strategy
        device = strategy.root_device
        strategy.kwargs["sync_module_states"] = True
        strategy.kwargs.setdefault("param_init_fn", lambda module: module.to_empty(device=device, recurse=False))
        return True

    def _causal_lm(self) -> nn.Module:
        if self.model is None:
            raise RuntimeError("the model is not built yet: call configure_model() (a Trainer does)")
        return self.model

    # ----------------------------------------------------------------- forward
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``(B, T, V)``."""
        return self._causal_lm()(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    def answer_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """Mean cross-entropy over the answer tokens (and EOS) of a right-padded training batch.

        Logits are computed only where an answer token is predicted (``logits_to_keep``): with 16k-token prompts
        and a 128k vocabulary, logits at every position would take tens of GB.
        """
        targets = batch["labels"][:, 1:]  # the token at t + 1 is predicted at position t
        answer = targets != IGNORE_INDEX  # (B, T - 1)
        if _masked_logits_supported():  # exactly the answer positions of each row: logits (N, V)
            keep, gold = F.pad(answer, (0, 1)), targets[answer]
        else:  # older transformers: the union of the rows' answer positions, logits (B, K, V)
            keep = answer.any(dim=0).nonzero().squeeze(-1)
            gold = targets[:, keep]
        out = self._causal_lm()(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False, logits_to_keep=keep
        )
        logits = out.logits.float()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), gold.flatten(), ignore_index=IGNORE_INDEX)

    # ---------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.answer_loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        return loss

    def _evaluate(self, batch: dict[str, Any], stage: str) -> list[dict[str, Any]]:
        texts = self.generate_answers(batch)
        parsed = [self.featurizer.parse(text, n) for text, n in zip(texts, batch["num_words"])]
        size = len(texts)
        for task in self.tasks:
            metrics = self.metrics[stage][task.name]
            answers = [row[task.name] for row in parsed]
            metrics["invalid_rate"].update(torch.tensor([not a.valid for a in answers], device=self.device))
            gold = batch["gold"][task.name]
            if task.kind == "sequence":
                metrics["acc"].update(_label_ids(answers, task).to(self.device), gold)
            else:
                words = _word_label_ids(answers, task)
                metrics["f1"].update(words, gold)
                metrics["exact_match"].update(words, gold)
            for name, metric in metrics.items():
                self.log(f"{stage}/{task.name}_{name}", metric, prog_bar=name != "invalid_rate", batch_size=size)
        return _prediction_rows(batch, texts, parsed) if stage == "test" else []

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """Per example and task: the prediction (``None``/best effort when invalid), the raw text and validity."""
        texts = self.generate_answers(batch)
        parsed = [self.featurizer.parse(text, n) for text, n in zip(texts, batch["num_words"])]
        return _prediction_rows(batch, texts, parsed)

    # -------------------------------------------------------------- decoding
    @torch.no_grad()
    def generate_answers(self, batch: dict[str, Any]) -> list[str]:
        """The answer text per prompt of a left-padded generation batch, by ``decoding``."""
        if self.hparams.decoding == "score":
            return self._scored_answers(batch)
        if self.hparams.decoding == "constrained":
            return self._constrained_answers(batch)
        return self._free_answers(batch)

    def _free_answers(self, batch: dict[str, Any]) -> list[str]:
        prompt = batch["input_ids"]
        config = GenerationConfig(
            do_sample=False,
            max_new_tokens=batch["max_new_tokens"],
            eos_token_id=self._eos_ids(),
            pad_token_id=self.featurizer.pad_id,
        )
        out = self._causal_lm().generate(
            input_ids=prompt,
            attention_mask=batch["attention_mask"],
            generation_config=config,
            synced_gpus=self._synced_gpus(),
        )
        return self.tokenizer.batch_decode(out[:, prompt.shape[1] :], skip_special_tokens=True)

    def _constrained_answers(self, batch: dict[str, Any]) -> list[str]:
        from lit_clf.generation import AnswerConstraint, constrained_generate

        encoder = self.featurizer.encoder
        keys = encoder.template.keys or None
        constraints = [AnswerConstraint(tuple(encoder.tasks), keys, n) for n in batch["num_words"]]
        return constrained_generate(
            self._causal_lm(),
            self.tokenizer,
            batch["input_ids"],
            batch["attention_mask"],
            constraints,
            fmt=self.hparams.prompt_format,
            max_new_tokens=self.hparams.max_new_tokens,  # unset: the longest valid answer, never cut
            synced_gpus=self._synced_gpus(),
        )

    def _scored_answers(self, batch: dict[str, Any]) -> list[str]:
        from lit_clf.generation import score_labels

        texts, ids = self._score_candidates
        scores = score_labels(
            self._causal_lm(),
            batch["input_ids"],
            batch["attention_mask"],
            ids,
            self.hparams.length_normalization,
            self.hparams.candidates_per_pass,
        )
        return [texts[i] for i in scores.argmax(-1).tolist()]

    @functools.cached_property
    def _score_candidates(self) -> tuple[list[str], list[list[int]]]:
        """Every answer ``score`` decoding ranks: its text, and its ids + EOS exactly as training tokenizes them."""
        from lit_clf.generation import candidate_answer_ids, label_candidates

        encoder = self.featurizer.encoder
        candidates = label_candidates(encoder.tasks)
        keys = encoder.template.keys or None
        texts = [render_answer(Example("", "", labels), encoder.tasks, keys) for labels in candidates]
        return texts, candidate_answer_ids(encoder, candidates)

    def _eos_ids(self) -> list[int]:
        """The tokenizer's EOS (what training appends) and the model's own end tokens (``<|eot_id|>``...)."""
        ids = [self.tokenizer.eos_token_id]
        extra = getattr(getattr(self._causal_lm(), "generation_config", None), "eos_token_id", None)
        ids += extra if isinstance(extra, list) else [extra] if extra is not None else []
        return list(dict.fromkeys(i for i in ids if i is not None))

    def _synced_gpus(self) -> bool:
        """Sharded weights: every rank must run each forward pass until all ranks finish, or generation hangs."""
        trainer = self._trainer
        return trainer is not None and isinstance(trainer.strategy, FSDPStrategy) and trainer.world_size > 1

    # ------------------------------------------------------------ optimizers


@functools.cache
def _masked_logits_supported() -> bool:
    """Whether transformers' ``logits_to_keep`` takes a boolean ``(B, T)`` mask (transformers >= 5.2x)."""
    try:
        from transformers.modeling_utils import slice_logits_to_keep
    except ImportError:
        return False
    try:
        kept = slice_logits_to_keep(torch.zeros(1, 2, 1), torch.tensor([[True, False]]))
    except (TypeError, IndexError, RuntimeError):
        return False
    return tuple(kept.shape) == (1, 1)


def _prediction_rows(batch: dict[str, Any], texts: list[str], parsed: list[dict[str, ParsedAnswer]]) -> list[dict]:
    return [
        {"index": index, "tasks": {name: {"pred": a.value, "raw": text, "valid": a.valid} for name, a in row.items()}}
        for index, text, row in zip(batch["index"].tolist(), texts, parsed)
    ]


def _label_ids(answers: list[ParsedAnswer], task: TaskSpec) -> torch.Tensor:
    """Class id per answer; -1 (always wrong) for an invalid one."""
    label2id = task.label2id
    return torch.tensor([label2id[a.value] if a.valid and a.value in label2id else -1 for a in answers])


def _word_label_ids(answers: list[ParsedAnswer], task: TaskSpec) -> list[list[int]]:
    """Word-label ids per answer, best effort for invalid ones (unknown labels -> ``Other``; the slot metrics
    pad or cut them to the gold length, MASSIVE-style)."""
    label2id, other = task.label2id, task.label2id[OTHER]
    return [[label2id.get(label, other) for label in a.value or []] for a in answers]


def _check_options(
    tasks: list[TaskSpec],
    prompt_format: str,
    shots: int,
    prompt_file: str | None,
    decoding: str,
    candidates_per_pass: int,
    lora: dict[str, Any] | None,
    load_in_4bit: bool,
    pretrained: bool,
) -> None:
    """One-line errors for option combinations that cannot work, raised before any weights are loaded."""
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"prompt_format: expected one of {', '.join(PROMPT_FORMATS)}, got {prompt_format!r}")
    if decoding not in DECODINGS:
        raise ValueError(f"decoding: expected one of {', '.join(DECODINGS)}, got {decoding!r}")
    if candidates_per_pass < 1:
        raise ValueError(f"candidates_per_pass: expected a positive number, got {candidates_per_pass}")
    token_task = next((task.name for task in tasks if task.kind == "token"), None)
    if decoding == "score" and token_task is not None:
        raise ValueError(
            f"decoding='score' ranks the labels of sequence tasks, but {token_task!r} is a token task; "
            "use decoding 'free' or 'constrained'"
        )
    if load_in_4bit and (lora is None or not pretrained):
        raise ValueError(
            "load_in_4bit (QLoRA) trains LoRA adapters on pretrained 4-bit weights: set lora and pretrained"
        )
    names = [task.name for task in tasks]
    if prompt_file is None:  # the paper's prompts exist for 0 and 5 shots of known task sets
        get_template(prompt_dataset(None, names), names, shots)


__all__ = ["DECODINGS", "DecoderGenerativeModule", "default_optimizer"]
