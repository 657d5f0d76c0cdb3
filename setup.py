from glob import glob

from setuptools import find_packages, setup

package_name = 'pspnet_ros'


def requirements(path):
    """Requirement lines of ``path`` (no comments, no ``-r`` includes)."""
    with open(path) as f:
        lines = [line.split('#')[0].strip() for line in f]
    return [line for line in lines if line and not line.startswith('-')]


setup(
    name=package_name,
    version='0.3.1',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.launch.py')),
        ('share/' + package_name + '/config', glob('config/*.yaml') + glob('config/*.xml')),
        # The default model, its model card and its shipped ONNX / int8 TFLite exports.
        ('share/' + package_name + '/models',
         glob('models/*.yaml') + glob('models/*.safetensors') + glob('models/*.onnx')
         + glob('models/*.tflite')),
    ],
    # Runtime Python dependencies come from package.xml (rosdep) in a ROS install and from
    # requirements.txt in a plain venv; listing them here would make colcon's generated
    # scripts refuse to start when apt's python3-opencv has no matching pip metadata.
    install_requires=['setuptools'],
    # Optional: `pip install -e '.[export]'` adds what `pspnet-ros export` needs (ONNX,
    # litert-torch for TFLite / int8 / Edge TPU); see docs/BACKENDS.md for why it gets its own
    # venv (`make test-export`).
    # `pip install -e '.[ray]'`: Ray for `pspnet-ros eval --workers N` (docs/EVALUATION.md).
    # 'test' is how colcon finds that the tests are pytest (setuptools ignores the older
    # tests_require, and colcon would fall back to the removed `setup.py test`).
    extras_require={'export': requirements('requirements-export.txt'),
                    'ray': requirements('requirements-ray.txt'), 'test': ['pytest']},
    zip_safe=True,
    maintainer='pspnet_ros developers',
    maintainer_email='pspnet-ros@example.org',
    description='PSPNet semantic segmentation node with CPU, CUDA and Edge TPU backends',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'segment_node = pspnet_ros.node.__main__:main',
            'pspnet-ros = pspnet_ros.cli:main',
        ],
    },
)
