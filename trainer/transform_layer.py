"""The Transform graph as a Keras layer, pruned once per set of inputs.

TFT 1.16 applies a TF1 Transform graph by pruning it to the given inputs on every call, and the
Trainer calls it four times with two sets of inputs (training data and `transform_features`
with the label columns, the two serving signatures without): 0.25 s a prune. The pruned
function depends only on which inputs are fed, so one per set serves every call."""
from tensorflow_transform import output_wrapper


def load_transform_layer(tft_output: output_wrapper.TFTransformOutput):
    layer = tft_output.transform_features_layer()
    wrapped = layer._saved_model_loader._wrapped_function
    prune = wrapped.prune
    pruned = {}

    def shared_prune(feeds, fetches):
        # Callers feed the same inputs in different orders (a dict's order): keep one function
        # per set, fed in name order.
        order = sorted(range(len(feeds)), key=lambda i: feeds[i].name)
        key = tuple(feeds[i].name for i in order)
        if key not in pruned:
            pruned[key] = prune([feeds[i] for i in order], fetches)
        function = pruned[key]
        return lambda *args: function(*[args[i] for i in order])

    # An instance attribute: it shadows WrappedFunction.prune for this graph only.
    wrapped.prune = shared_prune
    return layer
