"""A per-class registry of rules, looked up along the class hierarchy."""


class RuleRegistry:
    """Maps layer/op classes to rule functions; subclasses inherit rules.

    Example:

    ```python
    rules = RuleRegistry()

    @rules.register(keras.layers.Conv2D)
    def conv_rule(...): ...

    rules.find(layer)  # conv_rule for a Conv2D or a subclass of it
    ```
    """

    def __init__(self):
        self._rules = {}

    def register(self, *classes):
        def decorate(rule):
            for cls in classes:
                self._rules[cls] = rule
            return rule

        return decorate

    def find(self, operation):
        for cls in type(operation).__mro__:
            if cls in self._rules:
                return self._rules[cls]
        return None
