"""The score stage: fidelity scores of an existing generated column, written as a side column."""
