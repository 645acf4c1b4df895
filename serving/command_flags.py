"""Flags that `tfxline release` and `tfxline edge` share: `--config`, and a directory and a model
name whose defaults are the config's `output` directory and `name`. The config is read only when
it is given or a default is needed, so `--help` and fully spelled-out commands never load it."""
import argparse


def add(parser: argparse.ArgumentParser, directory: str) -> None:
    """`directory` is "serving" (--serving-dir) or "edge" (--edge-dir)."""
    where = {"serving": "holding models.config and <model>/<version>/",
             "edge": "the pipeline publishes <model>/<version>/ with manifest.json to"}[directory]
    parser.add_argument("--config", help="the pipeline config whose output directory and name are the defaults "
                                         "(default: the taxi config shipped with tfxline)")
    parser.add_argument(f"--{directory}-dir", f"--{directory}_dir", dest=f"{directory}_dir", metavar="DIR",
                        help=f"the directory {where}; a local path or a URI such as gs://bucket/{directory} "
                             f"(default: the config's output.{directory})")
    parser.add_argument("--model-name", "--model_name", dest="model_name", metavar="NAME",
                        help="the model (default: the config's name)")


def fill_defaults(args: argparse.Namespace, directory: str) -> None:
    """Sets the directory and model name the command line left out; raises config.ConfigError."""
    attribute = f"{directory}_dir"
    if args.config is None and getattr(args, attribute) is not None and args.model_name is not None:
        return
    from config import DEFAULT_CONFIG, load_config

    config = load_config(args.config or DEFAULT_CONFIG, resolve_inputs=False)
    if getattr(args, attribute) is None:
        setattr(args, attribute, {"serving": config.output.serving, "edge": config.output.edge}[directory])
    if args.model_name is None:
        args.model_name = config.name
