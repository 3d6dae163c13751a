"""arm_jax: Rubric-ARM (alternating RL for rubric-based reward models) in JAX/Flax."""

import setuptools

# Versions resolved and tested together; change them only with the test suite green.
INSTALL_REQUIRES = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "ml-collections==1.1.0",
    "transformers==5.24.0",
    "tokenizers==0.23.3",
    "safetensors==0.8.0",
    "tensorflow-datasets==4.9.10",
    "array-record==0.8.6",
    "grain==0.2.18",
    "gguf==0.19.0",
    "matplotlib==3.11.2",
    "tqdm==4.70.1",
    "tensorboardX==2.6.5",  # TensorBoard event files without TensorFlow
    "jinja2>=3.1",
    "numpy>=2.0",
]

EXTRAS_REQUIRE = {
    # torch is only a reference implementation for parity tests; 2.13.0 is the CPU wheel.
    # accelerate lets transformers load the GGUF reference model.
    # pytest-xdist: the suite runs on one worker per core, up to 4 (pytest.ini, tests/conftest.py).
    # libtpu: tests/test_plan.py compiles TPU programs on the CPU (arm_jax.plan).
    # nbclient, nbformat, ipykernel: tests/test_notebook.py runs the Colab notebook headless.
    "test": ["pytest>=8", "pytest-xdist==3.8.0", "torch==2.13.0", "accelerate==1.15.0",
             "nltk==3.10.4", "langdetect==1.0.9", "emoji==2.16.0", "syllapy==0.8.0",
             "libtpu==0.0.42.1", "nbclient==0.11.0", "nbformat==5.11.1", "ipykernel==7.4.0"],
    # The TPU compiler (jax[tpu]'s libtpu): TPU runs, and `python -m arm_jax.plan` on any host.
    "tpu": ["libtpu==0.0.42.1"],
    # The offline IFEval and IFBench checkers (arm_jax.data.ifeval, arm_jax.data.ifbench,
    # arm_jax.data.verified, experiments/build_offline_data.py).
    "data": ["nltk==3.10.4", "langdetect==1.0.9", "emoji==2.16.0", "syllapy==0.8.0"],
}

setuptools.setup(
    name="arm_jax",
    version="0.1.0",
    description="Rubric-ARM: rubric generator + judge reward models trained by alternating RL, in JAX",
    packages=setuptools.find_packages(include=["arm_jax", "arm_jax.*"]),
    package_data={"arm_jax": ["templates/*.txt"]},
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
)
