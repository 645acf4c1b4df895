"""Names shared by preprocessing, training and export, derived from the config only."""
from config import PipelineConfig

TRANSFORMED_SUFFIX = "_xf"


def transformed_name(name: str) -> str:
    return name + TRANSFORMED_SUFFIX


def vocabulary_name(name: str) -> str:
    return name + "_vocab"


def output_key(config: PipelineConfig) -> str:
    """The model's output tensor name in every signature."""
    return "predictions" if config.task == "regression" else "scores"


def num_classes(config: PipelineConfig) -> int:
    if config.task == "multiclass":
        return len(config.label.classes)
    return 1
