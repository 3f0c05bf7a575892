"""Small methods built on PANet's footing (docs/your-own-method.md): each is a `model.factory`
(`python train.py with model.factory=examples.<module>:<callable> ...`, run from the repository
root)."""
