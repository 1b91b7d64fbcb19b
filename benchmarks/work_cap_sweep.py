"""Train the preference model on one backtest cutoff's training inputs under a work cap and
print how training ended, the validation NDCG@10 and a digest of the weights (two runs with the
same arguments must print the same digest). Used to choose ``DEFAULT_MODEL_WORK_GCELLS``
(docs/backtest.md, "Reproducible training").

    .venv/bin/launch-pipeline backtest --source online_retail --path ... --cutoff 2011-09-01 \\
        --horizon-days 90 --slots 20 --work-dir /tmp/or_0901 --out /tmp/or_0901.json
    .venv/bin/python benchmarks/work_cap_sweep.py 20 \\
        /tmp/or_0901/cutoff_2011-09-01/model_inputs/training_inputs.npz [--op-determinism]
"""

from __future__ import annotations

import hashlib
import json
import sys
import time

import numpy as np

from launch_pipeline.model.training import train_model
from launch_pipeline.model_pipeline import pipeline_model_config, read_training_inputs


def main(argv: list[str]) -> None:
    work, path = float(argv[0]), argv[1]
    if "--op-determinism" in argv[2:]:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    inputs = read_training_inputs(path)
    t0 = time.perf_counter()
    res = train_model(inputs.train, pipeline_model_config(900.0, work), log=print)
    digest = hashlib.sha256()
    for w in res.model.get_weights():
        digest.update(np.ascontiguousarray(w).tobytes())
    print(
        json.dumps(
            {
                "weights_sha256": digest.hexdigest()[:16],
                "seconds": round(time.perf_counter() - t0, 1),
                **res.summary(),
                "valid": res.valid_metrics,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
