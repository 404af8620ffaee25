"""DecoderGenerativeModule: a causal LM fine-tuned to write the answer after a classification prompt.

Training is next-token cross-entropy on the answer tokens (and EOS) only: the prompt's labels are -100 (the
prompt encoder's mask, :mod:`lit_clf.prompting.encoding`). Evaluation reads an answer per prompt with a decoding mode
(:mod:`lit_clf.decoder.decoding`: free or constrained generation, or label scoring); an answer that names no label
counts as wrong and in ``{stage}/{task}_invalid_rate``.

The transformers model is built in :meth:`DecoderGenerativeModule.configure_model`
(:func:`~lit_clf.loading.load_causal_lm`), so Lightning can shard it under FSDP.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from transformers import AutoConfig, AutoTokenizer

from lit_clf.data.tasks import IGNORE_INDEX, Example, TaskSpec
from lit_clf.decoder.answer_log import AnswerLog, LoggedDecoding, log_header
from lit_clf.decoder.decoding import DECODINGS, Decoded, Decoding, DecodingName, build_decoding, check_decoding
from lit_clf.decoder.features import DecoderFeaturizer
from lit_clf.decoder.loss import LossWeighting, answer_loss_terms, pooled_loss
from lit_clf.decoder.packing import attention_mask
from lit_clf.decoder.prefix_cache import PrefixCache
from lit_clf.hub import check_model_ref
from lit_clf.loading import TorchDtype, check_load_options, load_causal_lm, within_context_window
from lit_clf.module import TaskModule, default_optimizer
from lit_clf.prompting.answers import AnswerStyle
from lit_clf.prompting.encoding import ShotsDraw
from lit_clf.prompting.formats import PROMPT_FORMATS, PromptFormat
from lit_clf.prompting.scoring import prediction_rows, update_answer_metrics
from lit_clf.prompting.templates import get_template


class DecoderGenerativeModule(TaskModule):
    """Any ``AutoModelForCausalLM`` (Llama 2/3 in the paper) trained and evaluated on classification prompts.

    One task is single-task; several share one prompt whose answer is the paper's JSON object (the consolidated
    model). Full fine-tuning by default; ``lora`` trains LoRA adapters instead and ``load_in_4bit`` makes it QLoRA.
    """

    counts_invalid = True
    generative = True
    evaluation_options = (
        "max_length",
        "max_new_tokens",
        "decoding",
        "length_normalization",
        "candidates_per_pass",
        "answer_log",
        "attn_implementation",
        "share_prefix",
        "share_prefix_min_saving",
    )

    def __init__(
        self,
        backbone: str,
        tasks: list[dict[str, Any]] | None = None,
        tokenizer: str | None = None,
        pretrained: bool = True,
        prompt_format: PromptFormat = "llama2",
        shots: int = 0,
        shots_draw: ShotsDraw = "per_example",
        prompt_file: str | None = None,
        prompt_style: AnswerStyle | None = None,
        label_descriptions: dict[str, dict[str, str]] | None = None,
        max_length: int = 16384,
        max_new_tokens: int | None = None,
        decoding: DecodingName = "free",
        length_normalization: Literal["none", "mean"] = "none",
        candidates_per_pass: int = 64,
        answer_log: str | None = None,
        lora: dict[str, Any] | None = None,
        load_in_4bit: bool = False,
        torch_dtype: TorchDtype | None = None,
        gradient_checkpointing: bool = False,
        attn_implementation: str | None = None,
        share_prefix: bool | Literal["auto"] = "auto",
        share_prefix_min_saving: float = 0.2,
        loss_weighting: LossWeighting = "token",
        optimizer: OptimizerCallable = default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        """
        Args:
            backbone: Hub id or local folder of any ``AutoModelForCausalLM`` (``meta-llama/Meta-Llama-3-8B``,
                ``meta-llama/Llama-2-7b-chat-hf``, ``HuggingFaceTB/SmolLM2-135M-Instruct``). No remote code.
            tasks: Task specs (name, kind, labels). Linked from the DataModule by the CLI.
            tokenizer: Hub id or folder of the tokenizer; unset uses ``backbone``.
            pretrained: Load pretrained weights. ``false`` builds the architecture from the model's config with
                random weights (tests, throughput work).
            prompt_format: How the prompt is wrapped: ``llama2`` (``<s>[INST] prompt [/INST] answer </s>``, the
                paper's format, also for Llama 3 base models; the default), ``chat`` (the tokenizer's chat
                template; instruct models) or ``raw`` (the prompt text, then the answer).
            shots: Few-shot examples per prompt, drawn from the DataModule's training split (0 or 5 with the
                paper's prompts).
            shots_draw: ``per_example``: each query gets its own seeded draw of few-shot examples (the paper);
                ``fixed``: one seeded draw for the whole run (a query that is itself among them gets the next
                example instead), so the examples become part of the prompt every row shares (``share_prefix``).
            prompt_file: A prompt template file (text, or YAML/JSON with ``prompt``, ``system``, ``shot``,
                ``keys``, ``style``; see ``lit_clf.prompting.templates``) instead of the paper's prompt for the dataset
                and tasks. Without either, a generic prompt is written from the task specs (any dataset).
            prompt_style: Answer style of the generic prompt: ``serial`` (plain text: the label, or a JSON list of
                labels; several tasks: one ``name: answer`` line each) or ``json`` (one JSON object keyed by task
                name). Unset: serial for one task, json for several (the paper's convention). The paper's prompts
                and prompt files fix their own style.
            label_descriptions: Generic prompt only: ``{task: {label: description}}``, written into the prompt one
                line per label (e.g. what each intent means).
            max_length: Most tokens of prompt + answer (16,384 in the paper); long texts are cut to fit, never the
                answer. Capped, with a warning, to the model's context window (``max_position_embeddings``,
                scaled by ``rope_scaling`` where the config sets it): Llama 2 4,096, Llama 3 8,192. Each run logs
                the share of prompts it cut, ``{stage}/truncated_frac``.
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
            answer_log: Test and predict: a JSONL file each batch's answers are appended to as it finishes. Run the
                same command again with the same file and the answers already there are read back, not generated
                again: an interrupted evaluation resumes, with the metrics of an uninterrupted one. A file written
                by another model, checkpoint, decoding or prompt is an error (:mod:`lit_clf.decoder.answer_log`).
                Unset: no log.
            lora: LoRA adapters instead of full fine-tuning: ``peft.LoraConfig`` arguments, e.g.
                ``{r: 16, lora_alpha: 32, lora_dropout: 0.05, target_modules: all-linear}``.
            load_in_4bit: QLoRA: load the base weights in 4-bit NF4 (bitsandbytes; needs a CUDA GPU and ``lora``).
            torch_dtype: Dtype to load the weights in (``bfloat16``, ``float16``, ``float32``, ``auto`` = the
                checkpoint's). Unset: bfloat16 under ``precision: bf16-true``, float16 under ``16-true``, else
                float32 (mixed precision keeps float32 master weights).
            gradient_checkpointing: Recompute activations in the backward pass (transformers' own checkpointing).
                Under FSDP use the strategy's ``activation_checkpointing_policy`` instead.
            attn_implementation: transformers' attention kernel: ``sdpa``, ``eager``, ``flex_attention`` (CUDA; the
                shared prefix then never builds a dense mask), ``flash_attention_2``...; unset: transformers'
                default (``sdpa``).
            share_prefix: Training batches as one packed sequence: the token prefix every row shares (the paper's
                instructions and label lists) computed once, then each row's remainder (equal loss and gradients;
                :mod:`lit_clf.decoder.packing`). ``auto``: when it saves at least ``share_prefix_min_saving`` of
                the padded batch's tokens; ``true``: always (with no common prefix: padding-free packing);
                ``false``: padded rows. Needs ``sdpa``, ``eager`` or ``flex_attention`` attention. Each device
                shares within its own batch: one example per device shares nothing.
            share_prefix_min_saving: ``share_prefix: auto``: the least fraction of tokens sharing must save.
            loss_weighting: How the answer tokens' cross-entropies are averaged in training: ``token``, all the
                batch's answer tokens alike (the paper); ``task``, each task's part of the answer averaged on its
                own, then the tasks with equal weight (a consolidated model's short intent label then weighs as
                much as its long slot list; :mod:`lit_clf.decoder.loss`; needs a fast tokenizer). Equal for one
                task.
            optimizer: Optimizer class and arguments (default AdamW, lr 1e-5; the paper: AdamW, lr 1e-6, in
                configs/decoder/base.yaml); ``bitsandbytes.optim.AdamW8bit`` or ``PagedAdamW`` save memory.
            lr_scheduler: Optional learning-rate scheduler, stepped every optimizer step (the paper: none).
        """
        super().__init__()
        check_model_ref(backbone, "model.init_args.backbone")
        if tokenizer:
            check_model_ref(tokenizer, "model.init_args.tokenizer")
        self.save_hyperparameters()
        self.init_tasks(tasks, optimizer, lr_scheduler)
        _check_options(
            self.tasks, prompt_format, shots, prompt_file, decoding, candidates_per_pass, lora, load_in_4bit, pretrained
        )
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer or backbone)
        self.featurizer = DecoderFeaturizer(
            self.tokenizer,
            self.tasks,
            prompt_format,
            shots,
            prompt_file,
            within_context_window(max_length, AutoConfig.from_pretrained(backbone), "model.init_args.max_length"),
            max_new_tokens,
            shots_draw=shots_draw,
            share_prefix=share_prefix,
            share_prefix_min_saving=share_prefix_min_saving,
            prompt_style=prompt_style,
            label_descriptions=label_descriptions,
            loss_weighting=loss_weighting,
        )
        self.backbone: nn.Module | None = None  # built in configure_model
        #: The decoding mode of validation/test/predict; may be changed between runs (``model.decoding = "score"``).
        self.decoding: DecodingName = decoding
        self._decodings: dict[tuple[str, int], Decoding] = {}
        self.prefix_cache = PrefixCache()
        self._logged: LoggedDecoding | None = None  # test/predict with answer_log: opened at the pass's start

    def configure_model(self) -> None:
        """Build the transformers model once (Lightning calls this before sharding, and on checkpoint load)."""
        if self.backbone is not None:
            return
        self.backbone = load_causal_lm(self.hparams.backbone, **self.load_options())
        self.place_built()

    # ----------------------------------------------------------------- forward
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``(B, T, V)``."""
        return self.built_backbone()(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    def answer_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """Cross-entropy on the answer tokens (and EOS) of a training batch, averaged over them or per task
        (``loss_weighting``, :mod:`lit_clf.decoder.loss`) over the global batch of all processes: right-padded
        rows, or one packed sequence with the rows' shared prefix computed once (:mod:`lit_clf.decoder.packing`);
        the two are equal.

        Logits are computed only where an answer token is predicted (``logits_to_keep``): with 16k-token prompts
        and a 128k vocabulary, logits at every position would take tens of GB.
        """
        targets = batch["labels"][:, 1:]  # the token at t + 1 is predicted at position t
        answer = targets != IGNORE_INDEX  # (B, T - 1); B = 1 for a packed batch
        tasks = batch["answer_task"][:, 1:] if "answer_task" in batch else None  # loss_weighting: task
        if _masked_logits_supported():  # exactly the answer positions of each row: logits (N, V)
            keep, gold = F.pad(answer, (0, 1)), targets[answer]
            tasks = None if tasks is None else tasks[answer]
        else:  # older transformers: the union of the rows' answer positions, logits (B, K, V)
            keep = answer.any(dim=0).nonzero().squeeze(-1)
            gold = targets[:, keep]
            tasks = None if tasks is None else tasks[:, keep]
        model = self.built_backbone()
        if "segments" in batch:  # one packed sequence: the shared prefix once, then each row's remainder
            inputs = {"attention_mask": attention_mask(model, batch["segments"]), "position_ids": batch["position_ids"]}
        else:
            inputs = {"attention_mask": batch["attention_mask"]}
        out = model(input_ids=batch["input_ids"], use_cache=False, logits_to_keep=keep, **inputs)
        sums, counts = answer_loss_terms(out.logits.float(), gold, tasks, len(self.tasks))
        trainer = self._trainer
        world = trainer.world_size if trainer is not None else 1
        if world > 1:  # the global batch's token counts: every process's loss is its share of one global mean
            counts = trainer.strategy.reduce(counts.detach().clone(), reduce_op="sum")
        return pooled_loss(sums, counts, world)

    # ---------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        self.prefix_cache.reset()  # the weights change: an evaluation prefix cache would be stale
        loss = self.answer_loss(batch)
        rows = batch["rows"] if "segments" in batch else batch["input_ids"].shape[0]
        several = self._trainer is not None and self._trainer.world_size > 1
        # under several processes each loss is a share of the global batch's; their mean is that loss
        self.log("train/loss", loss, prog_bar=True, batch_size=rows, sync_dist=several)
        self.log("train/shared_prefix_frac", float(batch.get("shared_prefix_frac", 0.0)), batch_size=rows)
        self._log_truncated("train", batch, rows)
        return loss

    def _log_truncated(self, stage: str, batch: dict[str, Any], rows: int) -> None:
        """``{stage}/truncated_frac``: the share of prompts whose texts were cut to fit ``max_length``."""
        if "truncated" in batch:
            self.log(f"{stage}/truncated_frac", batch["truncated"].float().mean(), batch_size=rows, sync_dist=True)

    def _evaluate(self, batch: dict[str, Any], stage: str) -> list[dict[str, Any]]:
        if stage == "val" and "teacher_forced" in batch:  # the gold answers' loss: cheap beside generation
            several = self._trainer is not None and self._trainer.world_size > 1
            loss = self.answer_loss(batch["teacher_forced"])
            self.log("val/loss", loss, batch_size=len(batch["index"]), sync_dist=several)
        decoded = self.decode(batch) if stage == "val" else self._logged_decode(batch)
        answers = [row.answers for row in decoded]
        update_answer_metrics(self.metrics[stage], self.tasks, answers, batch["gold"], self.device)
        self.log_metrics(stage, len(decoded))
        self._log_truncated(stage, batch, len(decoded))
        return _prediction_rows(batch, decoded) if stage == "test" else []

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """Per example and task: the prediction (``None``/best effort when invalid), the raw text and validity."""
        return _prediction_rows(batch, self._logged_decode(batch))

    def prompt_shots(self, example: Example) -> list[Example]:
        """The few-shot examples of ``example``'s prompt, drawn from the training split of the dataset featurized
        last (:func:`~lit_clf.prompting.encoding.select_shots`); none for a zero-shot prompt."""
        return self.featurizer.encoder.shots_for(example)

    # -------------------------------------------------------------- decoding
    @torch.no_grad()
    def decode(self, batch: dict[str, Any], decoding: DecodingName | None = None) -> list[Decoded]:
        """The answer (text and labels per task) of each prompt of a left-padded generation batch.

        Args:
            batch: A generation batch of this module's featurizer.
            decoding: ``free``, ``constrained`` or ``score``; unset: the module's :attr:`decoding`.
        """
        name = decoding or self.decoding
        encoder = self.featurizer.encoder
        key = (name, id(encoder))
        if key not in self._decodings:
            self._decodings = {k: v for k, v in self._decodings.items() if k[1] == id(encoder)}
            self._decodings[key] = build_decoding(
                name,
                encoder,
                max_new_tokens=self.hparams.max_new_tokens,  # constrained, unset: the longest valid answer
                length_normalization=self.hparams.length_normalization,
                candidates_per_pass=self.hparams.candidates_per_pass,
            )
        model = self.built_backbone()
        cache = self.prefix_cache.for_batch(model, batch)
        return self._decodings[key](model, batch, synced_gpus=self._synced_gpus(), past_key_values=cache)

    def _logged_decode(self, batch: dict[str, Any]) -> list[Decoded]:
        """:meth:`decode` for test and predict, through the answer log when there is one."""
        return self.decode(batch) if self._logged is None else self._logged(batch, self.decode)

    def _start_pass(self, split: str | None = None) -> None:
        """An evaluation pass starts: new weights since the last one, and (test, predict: ``split``) the answer
        log opened for it."""
        self.prefix_cache.reset()
        path = self.hparams.get("answer_log")
        self._logged = None
        if split is None or not path:
            return
        trainer = self.trainer
        header = log_header(self.hparams, trainer, self.decoding, split)
        log = AnswerLog(path, header, trainer.global_rank, trainer.world_size)
        if log.known:
            rank_zero_info(
                f"answer log {path}: {len(log.known):,} answers there; the batches they cover are read back, the "
                "others generated"
            )
        several = trainer.world_size > 1
        agree = functools.partial(trainer.strategy.reduce_boolean_decision, all=True) if several else None
        self._logged = LoggedDecoding(log, agree)

    def on_validation_epoch_start(self) -> None:
        self._start_pass()

    def on_test_epoch_start(self) -> None:
        self._start_pass("test")

    def on_test_epoch_end(self) -> None:
        logged, self._logged = self._logged, None  # the pass is over
        if logged is not None:
            logged.log_read_back(self.trainer)

    def on_predict_epoch_start(self) -> None:
        self._start_pass(getattr(getattr(self._trainer, "datamodule", None), "predict_split", "predict"))

    def on_predict_epoch_end(self) -> None:
        self._logged = None  # the pass is over: predict_texts afterwards neither reads nor writes the log

    def _synced_gpus(self) -> bool:
        """Sharded weights: every rank must run each forward pass until all ranks finish, or generation hangs."""
        trainer = self._trainer
        sharded = (FSDPStrategy, ModelParallelStrategy)
        return trainer is not None and isinstance(trainer.strategy, sharded) and trainer.world_size > 1


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


def _prediction_rows(batch: dict[str, Any], decoded: list[Decoded]) -> list[dict]:
    return prediction_rows(batch["index"].tolist(), [row.text for row in decoded], [row.answers for row in decoded])


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
    check_decoding(decoding, tasks)
    if candidates_per_pass < 1:
        raise ValueError(f"candidates_per_pass: expected a positive number, got {candidates_per_pass}")
    check_load_options(load_in_4bit, lora, pretrained)
    if prompt_file is not None:  # read now, not once the data are read
        get_template(None, [task.name for task in tasks], shots, prompt_file)


__all__ = ["DECODINGS", "DecoderGenerativeModule"]
