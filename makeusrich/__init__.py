"""Make Us Rich: train, serve and watch cryptocurrency forecasting models."""

__version__ = "0.1.0"
