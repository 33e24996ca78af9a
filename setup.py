from setuptools import find_packages, setup

setup(
    name="scipion-em-topazpu",
    version="0.1.0",
    description="Positive-unlabeled CNN particle picking for cryo-EM: the topazpu engine and its Scipion plugin",
    long_description=open("README.md").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["topazpu_core", "topazpu_core.*", "scipion_topazpu", "scipion_topazpu.*"]),
    package_data={
        "topazpu_core": ["data/*/*.mrc", "data/*/*.txt", "data/*/*.md", "data/*/*.pt", "data/*/*.json"],
        "scipion_topazpu": ["templates/*.json.template", "protocols.conf"],
    },
    include_package_data=True,
    install_requires=[
        "numpy>=1.23",
        "scipy>=1.9",
        "mrcfile>=1.4",
        "torch>=2.1",
        "tqdm",
        "matplotlib",
        "tifffile",
        "Pillow",
        "scipion-em",
        "scipion-pyworkflow",
    ],
    extras_require={"test": ["pytest", "hypothesis", "scipion-app"]},
    entry_points={
        "console_scripts": ["topazpu = topazpu_core.cli:main"],
        "pyworkflow.plugin": ["scipion_topazpu = scipion_topazpu"],
    },
)
