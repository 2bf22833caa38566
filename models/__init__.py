"""finsent's topic + sentiment classifier: model, training, evaluation, registry, inference."""
