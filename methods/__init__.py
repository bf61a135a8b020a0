"""Methods: each module registers its methods in suite.registry.METHODS when imported."""
