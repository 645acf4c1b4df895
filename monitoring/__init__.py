"""Data drift and training-serving skew: statistics of request logs and examples (numpy, or TFDV on Beam),
calibrated two-sample tests per feature, windows, reports (text, JSON, TFDV statistics protos) and
Prometheus gauges. Imports no TensorFlow; TFDV only for the Beam path and its protos."""
