from setuptools import find_packages, setup

setup(
    name="panet",
    version="0.1.0",
    description="Reference reproduction of PANet (Wang et al., ICCV 2019): few-shot segmentation "
    "with prototype alignment",
    packages=find_packages(include=["panet", "panet.*"]),
    python_requires=">=3.9",
    install_requires=[
        "torch>=2.0",
        "torchvision>=0.15",
        "numpy",
        "pillow",
        "sacred>=0.8.4",
        "pyyaml",
        "setuptools<82",  # sacred imports pkg_resources, which setuptools>=82 removed
        "tqdm",
        "pycocotools",
        "scipy",
        "scikit-image",
        "networkx",
        "matplotlib",
        "tensorboard",
        "submitit",
    ],
    extras_require={"test": ["pytest", "pytest-xdist"]},
)
