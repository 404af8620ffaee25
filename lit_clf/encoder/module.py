"""EncoderSeqTokenModule: one shared encoder, a head per task, summed cross-entropy."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer

from lit_clf.data.tasks import IGNORE_INDEX, TaskSpec
from lit_clf.encoder.features import EncoderFeaturizer, word_predictions
from lit_clf.encoder.pooling import Pooling, is_causal, pool, position_ids, resolve_pooling
from lit_clf.export.heads import load_exported_heads
from lit_clf.hub import check_model_ref
from lit_clf.loading import TorchDtype, check_load_options, load_model
from lit_clf.module import TaskModule, default_optimizer

HEADS_FILE = "lit_clf_heads.safetensors"
TASKS_FILE = "lit_clf_tasks.json"


def resolve_task_weights(tasks: list[TaskSpec], weights: Mapping[str, float] | None) -> dict[str, float]:
    """Loss weight per task: 1.0 for every task unless given (equal weighting, as in the paper)."""
    weights = dict(weights or {})
    unknown = sorted(set(weights) - {task.name for task in tasks})
    if unknown:
        raise ValueError(f"task_weights: unknown task {unknown[0]!r}; tasks are {[t.name for t in tasks]}")
    return {task.name: float(weights.get(task.name, 1.0)) for task in tasks}


def load_backbone(name: str, pretrained: bool, **options: Any) -> nn.Module:
    """An ``AutoModel`` backbone (encoder or causal decoder, no LM head) by hub id or local path, without its pooler
    (unused here), in training mode. ``options``: :func:`lit_clf.loading.load_model`'s (dtype, 4-bit, LoRA,
    checkpointing, attention kernel)."""
    backbone = load_model(name, auto_class=AutoModel, pretrained=pretrained, **options)
    base = backbone.get_base_model() if hasattr(backbone, "get_base_model") else backbone
    if getattr(base, "pooler", None) is not None:
        base.pooler = None  # unused weights break DDP's gradient bookkeeping
    return backbone.train()  # from_pretrained returns eval mode, which would switch dropout off in training


def load_tokenizer(name: str, by_words: bool):
    """The fast tokenizer, with a pad token: a causal model's tokenizer often has none, and borrows its EOS (padding
    is read from the attention mask, never from the pad id, so the choice cannot change what the heads read)."""
    # Byte-level BPE (RoBERTa, GPT-2, SmolLM2) needs add_prefix_space to tokenize pre-split words; others ignore it.
    kwargs = {"add_prefix_space": True} if by_words else {}
    tokenizer = AutoTokenizer.from_pretrained(name, **kwargs)
    if tokenizer.pad_token_id is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise ValueError(f"tokenizer {name!r}: no pad, EOS or unknown token to pad batches with")
        tokenizer.pad_token = fallback
    return tokenizer


class EncoderSeqTokenModule(TaskModule):
    """A shared backbone with a sequence or token head per task: an encoder (RoBERTa in the paper) or a causal
    decoder LLM (Llama, SmolLM2) with classification heads instead of a generated answer.

    Sequence heads classify one vector per input: an encoder's first token (``<s>``/``[CLS]``), a causal decoder's
    last real token (``pooling``). Token heads label every sub-token and are read back per word at the word's
    first sub-token (encoder) or last (causal decoder: the first that has seen the whole word). The loss is the
    sum of the per-task cross-entropies (equal weights unless ``task_weights`` says otherwise), so one task is
    single-task training and several are multi-task.
    """

    evaluation_options = ("max_length", "top_k", "compile", "multilabel_threshold")
    gives_probabilities = True  # softmax over each sequence head: ece and brier beside acc

    def __init__(
        self,
        backbone: str,
        tasks: list[dict[str, Any]] | None = None,
        tokenizer: str | None = None,
        pretrained: bool = True,
        max_length: int = 512,
        dropout: float = 0.1,
        task_weights: dict[str, float] | None = None,
        optimizer: OptimizerCallable = default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
        compile: bool = False,
        top_k: int = 3,
        multilabel_threshold: float = 0.5,
        pooling: Pooling = "auto",
        head_bias: bool = True,
        lora: dict[str, Any] | None = None,
        load_in_4bit: bool = False,
        torch_dtype: TorchDtype | None = None,
        gradient_checkpointing: bool = False,
        attn_implementation: str | None = None,
    ) -> None:
        """
        Args:
            backbone: Hub id or local folder of any ``AutoModel`` encoder (``roberta-base``,
                ``roberta-large``, ``bert-base-uncased``, ``sentence-transformers/all-MiniLM-L6-v2``) or causal
                decoder (``meta-llama/Meta-Llama-3-8B``, ``HuggingFaceTB/SmolLM2-135M-Instruct``). No remote code.
            tasks: Task specs (name, kind, labels). Linked from the DataModule by the CLI.
            tokenizer: Hub id or folder of the tokenizer; unset uses ``backbone``.
            pretrained: Load pretrained weights. ``false`` builds the architecture from the backbone's
                config with random weights (tests, throughput work).
            max_length: Inputs are truncated to this many tokens (special tokens included).
            dropout: Dropout before each head.
            task_weights: Loss weight per task name; tasks not listed weigh 1.0.
            optimizer: Optimizer class and arguments (default AdamW, lr 1e-5; the paper: Adam, lr 1e-5).
            lr_scheduler: Optional learning-rate scheduler, stepped every optimizer step.
            compile: Compile the backbone with ``torch.compile`` (dynamic shapes).
            top_k: Number of top labels with probabilities written per sequence task by ``predict``.
            multilabel_threshold: A multi-label task predicts every label whose probability (sigmoid) is above this.
            pooling: The vector sequence and multi-label heads read: ``first`` token (encoders), ``last`` attended
                token (causal decoders; right under left or right padding), ``mean`` of the attended tokens, or
                ``auto`` (last for a causal decoder, first for an encoder).
            head_bias: Each head's linear layer has a bias. ``false`` on a causal decoder read at its last token
                makes a one-sequence-task model export to transformers' ``*ForSequenceClassification`` exactly (its
                ``score`` layer has no bias: ``lit-clf export``); token heads keep their bias either way.
            lora: Train LoRA adapters (and the heads) instead of every backbone weight: ``peft.LoraConfig``
                arguments, e.g. ``{r: 16, lora_alpha: 32, target_modules: all-linear}``.
            load_in_4bit: QLoRA: the backbone's weights in 4-bit NF4 (bitsandbytes; a CUDA GPU and ``lora``).
            torch_dtype: Dtype to load the backbone in (``bfloat16``, ``float16``, ``float32``, ``auto``); unset:
                float32. The heads stay float32.
            gradient_checkpointing: Recompute the backbone's activations in the backward pass.
            attn_implementation: transformers' attention kernel (``sdpa``, ``eager``, ``flash_attention_2``...);
                unset: transformers' default.
        """
        if not 0.0 < multilabel_threshold < 1.0:
            raise ValueError(f"multilabel_threshold must be between 0 and 1 (exclusive), got {multilabel_threshold}")
        check_load_options(load_in_4bit, lora, pretrained)
        super().__init__()
        check_model_ref(backbone, "model.init_args.backbone")
        if tokenizer:
            check_model_ref(tokenizer, "model.init_args.tokenizer")
        self.save_hyperparameters()
        self.init_tasks(tasks, optimizer, lr_scheduler)
        self.loss_weights = resolve_task_weights(self.tasks, task_weights)
        self.causal = is_causal(AutoConfig.from_pretrained(backbone))  # before the weights: option errors come first
        self.pooling = resolve_pooling(pooling, self.causal)
        by_words = any(task.kind == "token" for task in self.tasks)
        self.tokenizer = load_tokenizer(tokenizer or backbone, by_words)
        specials = self.tokenizer.num_special_tokens_to_add()
        if max_length <= specials:
            raise ValueError(
                f"max_length={max_length} leaves no room for text: the tokenizer adds {specials} special tokens; "
                f"give at least {specials + 1}"
            )
        word_token = "last" if self.causal else "first"
        self.featurizer = EncoderFeaturizer(self.tokenizer, self.tasks, max_length, word_token)
        self.backbone: nn.Module | None = None  # built in configure_model, then the heads
        self.heads: nn.ModuleDict | None = None

    def configure_model(self) -> None:
        """Build the backbone, then the heads, once: Lightning calls this before sharding (under FSDP on several
        devices only rank 0 reads the weights) and on checkpoint load; :meth:`predict_texts` and
        :meth:`export_pretrained` call it too. Other direct use (``module(input_ids, attention_mask)``) calls it
        first."""
        if self.backbone is not None:
            return
        hp = self.hparams
        self.backbone = load_backbone(hp.backbone, **self.load_options())
        hidden = self.backbone.config.hidden_size
        self.heads = nn.ModuleDict(
            {
                task.name: nn.Sequential(
                    nn.Dropout(hp.dropout),
                    nn.Linear(hidden, task.num_labels, bias=hp.get("head_bias", True) or task.kind == "token"),
                )
                for task in self.tasks
            }
        )
        if hp.pretrained:  # a folder `lit-clf export` wrote: its heads too
            load_exported_heads(self, hp.backbone)
        self.place_built()
        if hp.compile:
            self.backbone.compile(dynamic=True)

    # ----------------------------------------------------------------- forward
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per task: ``(B, C)`` for sequence and multi-label tasks, ``(B, T, C)`` for token tasks.

        A causal backbone gets position ids counted over the attended tokens, so a left-padded row is computed
        exactly like a right-padded one, and no KV cache (nothing is generated; a cache would also grow again when
        activation checkpointing recomputes a layer)."""
        backbone = self.built_backbone()
        extra = {"position_ids": position_ids(attention_mask), "use_cache": False} if self.causal else {}
        out = backbone(input_ids=input_ids, attention_mask=attention_mask, **extra)
        # (B, T, H) in the heads' dtype: float32 whatever the backbone's, except under precision bf16-true/16-true,
        # where Lightning converts the heads too
        hidden = out.last_hidden_state.to(next(self.heads.parameters()).dtype)
        pooled = pool(hidden, attention_mask, self.pooling) if any(t.kind != "token" for t in self.tasks) else None
        return {task.name: self.heads[task.name](hidden if task.kind == "token" else pooled) for task in self.tasks}

    def task_losses(
        self, logits: Mapping[str, torch.Tensor], labels: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Cross-entropy per task (token tasks average over labelled first sub-tokens); binary cross-entropy per
        label for multi-label tasks (averaged over labels and labelled examples)."""
        kinds = {task.name: task.kind for task in self.tasks}
        losses = {}
        for name, out in logits.items():
            if kinds[name] == "multilabel":
                target = labels[name]
                labelled = _labelled_rows(target)
                if labelled.any():
                    losses[name] = F.binary_cross_entropy_with_logits(out[labelled].float(), target[labelled])
                else:  # no labelled example in the batch: no gradient, and no NaN from an empty mean
                    losses[name] = out.sum() * 0.0
            else:
                losses[name] = F.cross_entropy(out.flatten(0, -2), labels[name].flatten(), ignore_index=IGNORE_INDEX)
        return losses

    def model_step(
        self, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Shared by train/val/test: total loss, per-task losses and logits."""
        logits = self(batch["input_ids"], batch["attention_mask"])
        losses = self.task_losses(logits, batch["labels"])
        total = sum(self.loss_weights[name] * loss for name, loss in losses.items())
        return total, losses, logits

    # ---------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss, losses, _ = self.model_step(batch)
        size = batch["input_ids"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        if len(losses) > 1:
            self.log_dict({f"train/{name}_loss": value for name, value in losses.items()}, batch_size=size)
        return loss

    def _evaluate(self, batch: dict[str, Any], stage: str) -> list[dict[str, Any]]:
        loss, _, logits = self.model_step(batch)
        size = batch["input_ids"].shape[0]
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=size, sync_dist=True)
        for task in self.tasks:
            metrics = self.metrics[stage][task.name]
            if task.kind == "multilabel":
                target = batch["labels"][task.name]
                labelled = _labelled_rows(target)
                chosen = (logits[task.name].float().sigmoid() > self.hparams.multilabel_threshold).long()
                for metric in metrics.values():
                    metric.update(chosen[labelled], target[labelled].long())
                continue
            preds = logits[task.name].argmax(-1)
            if task.kind == "sequence":
                gold = batch["labels"][task.name]
                metrics["acc"].update(preds, gold)
                probs = logits[task.name].float().softmax(-1)
                metrics["ece"].update(probs, gold)
                metrics["brier"].update(probs, gold)
            else:
                words = self._word_predictions(batch, task, preds)
                for metric in metrics.values():
                    metric.update(words, batch["word_labels"][task.name])
        self.log_metrics(stage, size)
        return self._prediction_rows(batch, logits) if stage == "test" else []

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """Per example: predicted label(s) per task and, for sequence tasks, the top-k probabilities."""
        return self._prediction_rows(batch, self(batch["input_ids"], batch["attention_mask"]))

    def _prediction_rows(self, batch: dict[str, Any], logits: dict[str, torch.Tensor]) -> list[dict[str, Any]]:
        rows = [{"index": int(i), "tasks": {}} for i in batch["index"]]
        for task in self.tasks:
            out = logits[task.name].float()
            if task.kind == "multilabel":
                probs = out.sigmoid()
                top_probs, top_ids = probs.topk(min(self.hparams.top_k, task.num_labels), dim=-1)
                for row, p, ids, k in zip(rows, probs.tolist(), top_ids.tolist(), top_probs.tolist()):
                    chosen = [task.labels[j] for j, q in enumerate(p) if q > self.hparams.multilabel_threshold]
                    top = [[task.labels[j], round(q, 6)] for j, q in zip(ids, k)]
                    row["tasks"][task.name] = {"pred": chosen, "top": top}
            elif task.kind == "sequence":
                probs, ids = out.softmax(-1).topk(min(self.hparams.top_k, task.num_labels), dim=-1)
                for row, p, i in zip(rows, probs.tolist(), ids.tolist()):
                    top = [[task.labels[j], round(q, 6)] for j, q in zip(i, p)]
                    row["tasks"][task.name] = {"pred": top[0][0], "top": top}
            else:
                for row, ids in zip(rows, self._word_predictions(batch, task, out.argmax(-1))):
                    row["tasks"][task.name] = {"pred": [task.labels[j] for j in ids]}
        return rows

    def _word_predictions(self, batch: dict[str, Any], task, token_preds: torch.Tensor) -> list[list[int]]:
        num_words = [len(gold) for gold in batch["word_labels"][task.name]]
        return word_predictions(token_preds, batch["word_positions"], num_words, task.label2id[task.outside])

    # ------------------------------------------------------------------ export
    def export_pretrained(self, directory: str | Path) -> Path:
        """Write a folder plain transformers can load: the backbone and tokenizer via ``save_pretrained``,
        the heads as safetensors and the task specs as JSON. Reload with :meth:`from_exported`, or
        ``AutoModel.from_pretrained(directory)`` for the encoder alone.
        """
        directory = Path(directory)
        self.configure_model()
        backbone = getattr(self.backbone, "_orig_mod", self.backbone)
        if hasattr(backbone, "merge_and_unload"):  # LoRA: the adapters merged into a copy of the weights
            backbone = copy.deepcopy(backbone).merge_and_unload()
        backbone.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in self.heads.state_dict().items()}, directory / HEADS_FILE
        )
        meta = {"tasks": [task.to_dict() for task in self.tasks], "max_length": self.featurizer.max_length}
        (directory / TASKS_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        return directory

    @classmethod
    def from_exported(cls, directory: str | Path, **kwargs: Any) -> EncoderSeqTokenModule:
        """Rebuild a module from :meth:`export_pretrained` output (no lit_clf checkpoint needed)."""
        directory = Path(directory)
        meta = json.loads((directory / TASKS_FILE).read_text(encoding="utf-8"))
        module = cls(backbone=str(directory), tasks=meta["tasks"], max_length=meta["max_length"], **kwargs)
        module.configure_model()
        module.heads.load_state_dict(load_file(directory / HEADS_FILE))
        return module


def _labelled_rows(targets: torch.Tensor) -> torch.Tensor:
    """The rows of a multi-label target matrix that have labels (an unlabelled example's row is all -100)."""
    return targets[:, 0] != IGNORE_INDEX
