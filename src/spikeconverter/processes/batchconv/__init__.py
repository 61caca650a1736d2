"""The BatchConv Process and its ProcessModels (Lava scans this folder for models)."""
