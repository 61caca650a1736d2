"""Shared constants of the fault-injection tests."""

TINY = ["small_cnn", "--model-arg", "input_size=8", "--model-arg", "width=4",
        "--model-arg", "hidden=8", "--num-classes", "3"]
