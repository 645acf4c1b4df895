# The image Kubeflow runs every tfxline component in (`kubeflow.image` in the config).
# TFX's own 1.16 image has TensorFlow, Beam and TFX; tfxline adds its packages on top, so the
# Trainer and Transform find `trainer.*` by import path instead of an uploaded user module.
# tests/e2e/test_image.py builds this environment the same way in a fresh venv and imports every module.
FROM gcr.io/tfx-oss-public/tfx:1.16.0
WORKDIR /tfxline
# tf.keras is tf-keras (Keras 2) in every component, as in a local run.
ENV TF_USE_LEGACY_KERAS=1
COPY setup.py constraints.txt ./
COPY config config
COPY metadata metadata
COPY pipeline pipeline
COPY components components
COPY scoring scoring
COPY review review
COPY trainer trainer
COPY monitoring monitoring
COPY schema schema
COPY serving serving
COPY tfxline tfxline
COPY system system
# With its dependencies, pinned as locally: what the TFX image lacks (LiteRT for the TFLite parity
# check, pydantic and PyYAML for the config, the serving packages) comes in at the same versions.
RUN pip install --no-cache-dir -c constraints.txt .
