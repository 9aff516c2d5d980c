"""textrnn: recurrent-network text models on Keras 3."""

__version__ = "0.1.0"
