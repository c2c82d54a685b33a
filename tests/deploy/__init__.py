"""The deployment's files: the dependency lock, the image, the compose stack."""
