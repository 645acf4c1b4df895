"""Data drift and training-serving skew: statistics of request logs and examples (numpy, or TFDV on Beam),
calibrated two-sample tests per feature, windows, reports (text, JSON, TFDV statistics protos), Prometheus
gauges and alerting rules (prometheus/), and `tfxline data simulate`."""
