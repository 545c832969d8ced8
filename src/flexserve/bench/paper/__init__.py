"""The paper's evaluation, reproduced: one module per figure, a runner and a report."""
