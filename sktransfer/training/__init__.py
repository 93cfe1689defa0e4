"""The fine-tuning engine: everything a fit does after its estimator has checked the
parameters and the input. It imports no estimator module and not ``sklearn.base``.

- ``_plan``: ``Plan`` (how a fit trains) and ``FitData`` (its rows, split once);
- ``_recipe``: the families' defaults, the step budget, layer-wise groups, the schedule;
- ``_assemble``: freezing, the adapter and the optimiser groups in one map of names;
- ``_model``: ``TransferModel``, ``TaskHeads``, ``BranchedBody``;
- ``_phases``: the linear probe, the head on cached features, the unfrozen phase;
- ``_batchnorm``: BatchNorm statistics re-estimated on chosen rows (AdaBN; after adaptation),
  and the source rows' own, recorded when the pretrained ones were kept;
- ``_contrastive``: SetFit's pair phase of the body, before the probe (few labelled rows);
- ``_loss`` / ``_adaptation``: the criterion in skorch's slot and its adaptation terms;
- ``_net``: ``TransferNet``; ``_probe``; ``_regularize`` (L2-SP, WiSE-FT); ``_data``;
- ``_guard``: ``wise="auto"``, the point between the probe and the fine-tune kept;
- ``_predict``: a fitted model's outputs over new rows (what ``predict`` reads);
- ``_peft`` (LoRA, BitFit) and ``_distributed`` (``strategy="ddp"``).
"""

from ._adaptation import (
    ADAPTATION_LOSSES,
    AdaptationLoss,
    AdaptationProgress,
    CORALLoss,
    DANNLoss,
    GradReverse,
    coral_loss,
    make_adaptation_loss,
)
from ._assemble import (
    AdapterSpec,
    Trainable,
    assemble,
    check_freeze,
    frozen_names,
    fully_frozen_modules,
)
from ._batchnorm import (
    SOURCE_STATISTICS_ROWS,
    batch_bounds,
    batchnorms,
    fold_statistics,
    pretrained_statistics_kept,
    reestimate_batchnorm,
    row_batches,
    source_statistics,
    target_batchnorm,
)
from ._contrastive import contrastive_phase, pair_loss
from ._data import SourceDataset, TrainingDataset, identity_collate
from ._distributed import (
    check_process_group,
    is_main_process,
    rank_device,
    shared_seed,
)
from ._guard import (
    MIN_GUARD_ROWS,
    WISE_GRID,
    choose_wise,
    guard_rows,
    held_out_loss,
    settle_wise,
    wise_grid,
)
from ._loss import LossTask, TransferCriterion, task_loss
from ._model import (
    BranchedBody,
    TaskHeads,
    TransferModel,
    first_branch,
    load_linear_heads,
    make_trainable,
)
from ._net import TransferNet, drop_training_state, fit_net, make_net, resume_training
from ._peft import (
    ADAPTERS,
    adapter_parameters,
    apply_adapter,
    base_param_name,
    bitfit_parameters,
    import_peft,
    lora_targets,
    merge_adapter,
    trainable_parameters,
)
from ._phases import fit_probe, head_features, train_all, train_head
from ._plan import FitData, Plan, split_rows
from ._predict import predict_outputs
from ._probe import (
    PROBE_ALPHAS,
    PROBE_CS,
    PROBE_CV,
    PROBE_FALLBACK_C,
    PROBE_LRCV_OPTIONS,
    fit_linear_probe,
    fit_task_probes,
)
from ._recipe import (
    CONTRASTIVE_MAX_EPOCHS,
    CONTRASTIVE_MAX_ROWS,
    CONTRASTIVE_STEPS,
    RECIPES,
    OneCycle,
    body_family,
    budget_epochs,
    contrastive_epochs,
    layerwise_groups,
    resolve_batchnorm,
    resolve_freeze,
    resolve_lr,
    resolve_lr_mult,
    steps_per_epoch,
)
from ._regularize import L2SP, interpolate_weights, weights_snapshot

__all__ = [
    "SOURCE_STATISTICS_ROWS",
    "batch_bounds",
    "batchnorms",
    "fold_statistics",
    "pretrained_statistics_kept",
    "reestimate_batchnorm",
    "source_statistics",
    "row_batches",
    "target_batchnorm",
    "CONTRASTIVE_MAX_EPOCHS",
    "CONTRASTIVE_MAX_ROWS",
    "CONTRASTIVE_STEPS",
    "contrastive_epochs",
    "contrastive_phase",
    "pair_loss",
    "ADAPTATION_LOSSES",
    "ADAPTERS",
    "L2SP",
    "MIN_GUARD_ROWS",
    "WISE_GRID",
    "PROBE_ALPHAS",
    "PROBE_CS",
    "PROBE_CV",
    "PROBE_FALLBACK_C",
    "PROBE_LRCV_OPTIONS",
    "RECIPES",
    "AdaptationLoss",
    "AdaptationProgress",
    "AdapterSpec",
    "BranchedBody",
    "CORALLoss",
    "DANNLoss",
    "FitData",
    "GradReverse",
    "LossTask",
    "OneCycle",
    "Plan",
    "SourceDataset",
    "TaskHeads",
    "Trainable",
    "TrainingDataset",
    "TransferCriterion",
    "TransferModel",
    "TransferNet",
    "adapter_parameters",
    "apply_adapter",
    "assemble",
    "check_freeze",
    "base_param_name",
    "bitfit_parameters",
    "body_family",
    "budget_epochs",
    "check_process_group",
    "choose_wise",
    "coral_loss",
    "drop_training_state",
    "first_branch",
    "fit_linear_probe",
    "fit_net",
    "fit_probe",
    "fit_task_probes",
    "frozen_names",
    "guard_rows",
    "fully_frozen_modules",
    "head_features",
    "held_out_loss",
    "predict_outputs",
    "settle_wise",
    "wise_grid",
    "identity_collate",
    "import_peft",
    "interpolate_weights",
    "is_main_process",
    "layerwise_groups",
    "load_linear_heads",
    "lora_targets",
    "make_adaptation_loss",
    "make_net",
    "make_trainable",
    "merge_adapter",
    "rank_device",
    "resolve_batchnorm",
    "resolve_freeze",
    "resolve_lr",
    "resolve_lr_mult",
    "resume_training",
    "shared_seed",
    "split_rows",
    "steps_per_epoch",
    "task_loss",
    "train_all",
    "train_head",
    "trainable_parameters",
    "weights_snapshot",
]
