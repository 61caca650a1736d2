"""The BatchDense Process and its ProcessModels (Lava scans this folder for models)."""
