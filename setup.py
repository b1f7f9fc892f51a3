"""The wheel's packages, found on disk, never listed by hand.

Everything else lives in pyproject.toml. ``packages.find`` there finds packages
only under the names of their folders, and two folders install under names of
their own, which no other distribution's top-level package can take:
``ui/`` as ``sparecycles_ui`` and ``resources/`` as ``sparecycles_resources``.
So the list is made here, by the same finder, for every folder with an
``__init__.py``; tests/test_wheel.py checks the built wheel holds each one.
"""

from setuptools import find_namespace_packages, find_packages, setup

# installed name -> folder in this tree
RENAMED = {"sparecycles_ui": "ui", "sparecycles_resources": "resources"}

packages = find_packages(include=["trayapp", "trayapp.*", "sparecycles", "sparecycles.*"])
# Their data folders (icons, the demo job) count as packages too, so setuptools
# ships them without warning that it "would ignore" them.
for name, folder in RENAMED.items():
    packages += [name, *(f"{name}.{sub}" for sub in find_namespace_packages(folder, exclude=["*__pycache__*"]))]

setup(packages=packages, package_dir=RENAMED)
