"""Child process of test_reference_variants.py: the registered model on a file, under one TF setting.

Usage: python _keras_reference.py MODEL_URI INPUT.parquet OUTPUT.npz INTRA_OP_THREADS

``TF_ENABLE_ONEDNN_OPTS`` comes from the environment (TensorFlow reads it when it loads, hence a
process per setting); the intra-op thread count is set through ``tf.config.threading`` before any
TensorFlow op runs. Writes two predictions of every row: ``large_batch`` — the pyfunc's Keras network
called once on the whole file repeated 4 times (a matrix product big enough for TensorFlow to use its
intra-op threads; it runs first, so oneDNN's verbose header reports that thread pool) — and
``pyfunc`` — ``predict`` as every consumer calls it (2,048-row batches, which TensorFlow's oneDNN
path runs on the calling thread when they fit in L2). The last line printed is
``REFERENCE_RUN {json}``: what TensorFlow reports it used, for the parent to check and print.
"""

from __future__ import annotations

import json
import os
import sys


def main(model_uri: str, input_path: str, output_path: str, threads: int) -> None:
    import tensorflow as tf

    # Must precede any op: afterwards TensorFlow refuses to change its thread pools.
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    import mlflow
    import numpy as np
    import pandas as pd
    from tensorflow.python.util import _pywrap_util_port

    from housing_platform.core import features

    frame = pd.read_parquet(input_path)
    pyfunc = mlflow.pyfunc.load_model(model_uri)
    python_model = pyfunc.unwrap_python_model()
    repeated = np.concatenate([features.transform(python_model.transformer, frame)] * 4)
    large_batch = np.asarray(python_model.network(repeated, training=False), dtype=np.float64)[: len(frame), 0]
    predictions = np.asarray(pyfunc.predict(frame), dtype=np.float64)
    np.savez(output_path, pyfunc=predictions, large_batch=large_batch)
    used = {
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        "onednn_enabled": bool(_pywrap_util_port.IsMklEnabled()),  # TF's own flag: its oneDNN kernels on?
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "tensorflow": tf.__version__,
        "rows": len(frame),
    }
    print("REFERENCE_RUN " + json.dumps(used), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
