"""launch_pipeline: decide which new products to launch, when, and to whom to promote them."""

__version__ = "0.1.0"
