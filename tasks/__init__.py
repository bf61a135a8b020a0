"""Tasks: each module registers its tasks in suite.registry.TASKS when imported."""
