"""keras_relaxprune_apps: the `relaxprune` command and the end-to-end jobs.

Built on `keras_relaxprune`'s public API only: dataset loaders (CIFAR-10,
CamVid), reference models (CIFAR ResNets, a small U-Net, small keras-hub
backbones), augmented batches, the measured recipe's building blocks, the
steps of a pruning job and the `relaxprune run` job. `import keras_relaxprune`
never loads this package.
"""

# The quiet start must come before TensorFlow starts: keep this order.
# isort: off
from keras_relaxprune_apps import quiet_start  # first: keeps the command's start-up quiet
import keras_relaxprune  # noqa: F401  (TensorFlow starts here, while stderr is held)
# isort: on

quiet_start.release()

# The names examples and users need; everything else here is the command's own.
from keras_relaxprune_apps.batches import (  # noqa: E402
    AugmentedBatches,
    EpochSync,
    SegmentationBatches,
)
from keras_relaxprune_apps.datasets import (  # noqa: E402
    CAMVID_IGNORE_LABEL,
    CAMVID_NUM_CLASSES,
    DATA_DIR_ENV,
    load_camvid,
    load_cifar10,
)
from keras_relaxprune_apps.evaluation import (  # noqa: E402
    accuracy,
    mean_iou_metric,
    segmentation_loss,
    segmentation_scores,
)
from keras_relaxprune_apps.job_records import (  # noqa: E402
    device_name,
    export_and_time,
    print_before_after,
    run_record,
    save_trained,
    write_summary,
)
from keras_relaxprune_apps.job_steps import (  # noqa: E402
    BASELINE_METHODS,
    PrunedModels,
    cost_summary,
    fine_tune,
    prune_and_strip,
    reproducible,
    train,
)
from keras_relaxprune_apps.keras_hub_models import (  # noqa: E402
    hub_cspdarknet,
    hub_cspresnext,
    hub_densenet,
    hub_efficientnet,
    hub_mobilenet_v3,
    hub_resnet,
    hub_vgg,
    hub_vit,
)
from keras_relaxprune_apps.models import (  # noqa: E402
    PositionEmbedding,
    cifar_resnet,
    small_unet,
    small_vit,
)
from keras_relaxprune_apps.option_types import (  # noqa: E402
    fraction,
    non_negative,
    non_negative_int,
    number_type,
    open_fraction,
    positive,
    positive_int,
)
from keras_relaxprune_apps.pruning_job import run_pruning_job  # noqa: E402
from keras_relaxprune_apps.recipe import (  # noqa: E402
    DISTILL_STUDENT_LOSS_WEIGHT,
    DISTILL_TEMPERATURE,
    FINE_TUNE_LR,
    PRUNING_WEIGHT_DECAY,
    STRIP_TOLERANCE,
    add_job_arguments,
    check_strip,
    distiller_for,
    optimizer_for,
    pruning_callbacks,
    recipe_options,
    trainer,
)

__all__ = [
    "AugmentedBatches",
    "BASELINE_METHODS",
    "CAMVID_IGNORE_LABEL",
    "CAMVID_NUM_CLASSES",
    "DATA_DIR_ENV",
    "DISTILL_STUDENT_LOSS_WEIGHT",
    "DISTILL_TEMPERATURE",
    "EpochSync",
    "FINE_TUNE_LR",
    "PRUNING_WEIGHT_DECAY",
    "PositionEmbedding",
    "PrunedModels",
    "STRIP_TOLERANCE",
    "SegmentationBatches",
    "accuracy",
    "add_job_arguments",
    "check_strip",
    "cifar_resnet",
    "cost_summary",
    "device_name",
    "distiller_for",
    "export_and_time",
    "fine_tune",
    "fraction",
    "hub_cspdarknet",
    "hub_cspresnext",
    "hub_densenet",
    "hub_efficientnet",
    "hub_mobilenet_v3",
    "hub_resnet",
    "hub_vgg",
    "hub_vit",
    "load_camvid",
    "load_cifar10",
    "mean_iou_metric",
    "non_negative",
    "non_negative_int",
    "number_type",
    "open_fraction",
    "optimizer_for",
    "positive",
    "positive_int",
    "print_before_after",
    "prune_and_strip",
    "pruning_callbacks",
    "recipe_options",
    "reproducible",
    "run_pruning_job",
    "run_record",
    "save_trained",
    "segmentation_loss",
    "segmentation_scores",
    "small_unet",
    "small_vit",
    "train",
    "trainer",
    "write_summary",
]
