# The image Kubeflow runs every tfxline component in (`kubeflow.image` in the config).
# TFX's own 1.16 image has TensorFlow, Beam and TFX; tfxline adds its modules on top, so the
# Trainer and Transform find `trainer.*` by import path instead of an uploaded user module.
FROM gcr.io/tfx-oss-public/tfx:1.16.0
WORKDIR /tfxline
# tf.keras is tf-keras (Keras 2) in every component, as in a local run (pipeline/local.py).
ENV TF_USE_LEGACY_KERAS=1
COPY setup.py constraints.txt ./
COPY config config
COPY pipeline pipeline
COPY components components
COPY trainer trainer
COPY schema schema
COPY serving serving
RUN pip install --no-cache-dir --no-deps . pydantic PyYAML
