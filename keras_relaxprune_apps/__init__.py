"""keras_relaxprune_apps: the `relaxprune` command and the end-to-end jobs.

Built on `keras_relaxprune`'s public API only: dataset loaders (CIFAR-10,
CamVid), reference models (CIFAR ResNets, a small U-Net), augmented batches,
the measured recipe's building blocks, and the `relaxprune run` job.
`import keras_relaxprune` never loads this package.
"""

# The quiet start must come before TensorFlow starts: keep this order.
# isort: off
from keras_relaxprune_apps import quiet_start  # first: keeps the command's start-up quiet
import keras_relaxprune  # noqa: F401  (TensorFlow starts here, while stderr is held)
# isort: on

quiet_start.release()
