"""The console's widgets, one per module: each draws one part of the run from the state the
app folds (core/state.py) and says what the operator chose with a typed message."""
