"""kmsdeploy: declarative configuration of Microsoft volume-activation infrastructure."""

__version__ = "0.1.0"
