"""Local infrastructure for Aetheris: the ``template.yaml`` loader and the moto/LocalStack bootstrap."""
