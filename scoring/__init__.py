"""Batch and stream scoring of pushed models on Apache Beam: `tfxline score` and `tfxline stream`."""
