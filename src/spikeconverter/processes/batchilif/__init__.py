"""The BatchILIF Process and its ProcessModels (Lava scans this folder for models)."""
