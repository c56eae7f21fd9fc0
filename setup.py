"""Installs fxpkcs11 (the provider) and vhsm (the virtual Vectera Plus) and builds
libfxpkcs11.so into fxpkcs11/lib/. Build without isolation so that the library records
the interpreter and site-packages it will run with:

    pip install --no-build-isolation -e .
"""
import os
import shutil
import sys

from setuptools import Extension, find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.develop import develop

HERE = os.path.dirname(os.path.abspath(__file__))


def build_library(outdir: str) -> None:
    sys.path.insert(0, os.path.join(HERE, "native"))
    try:
        import build as native_build  # native/build.py
    finally:
        sys.path.pop(0)
    native_build.build(outdir)


class BuildPy(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):  # pip install -e: the tree is the package
            build_library(os.path.join(HERE, "fxpkcs11", "lib"))
            return
        build_library(os.path.join(self.build_lib, "fxpkcs11", "lib"))
        data = os.path.join(self.build_lib, "fxpkcs11", "data")
        os.makedirs(data, exist_ok=True)
        shutil.copyfile(os.path.join(HERE, "config", "fxpkcs11.cfg"), os.path.join(data, "fxpkcs11.cfg"))


class Develop(develop):
    def run(self):
        super().run()
        build_library(os.path.join(HERE, "fxpkcs11", "lib"))


setup(
    name="fxpkcs11",
    version="0.1.0",
    description="PKCS #11 provider libfxpkcs11.so and a virtual Futurex Vectera Plus HSM",
    python_requires=">=3.11",
    packages=find_packages(include=["fxpkcs11", "fxpkcs11.*", "vhsm", "vhsm.*"]),
    package_data={"fxpkcs11": ["lib/*.so", "data/*.cfg"]},
    install_requires=["cffi>=1.15", "cryptography>=41"],
    # the C fast path of vhsm/wire.py's codec (vhsm works without it, only slower)
    ext_modules=[Extension("vhsm._wirecodec", ["native/wirecodec.c"], extra_compile_args=["-O2"])],
    cmdclass={"build_py": BuildPy, "develop": Develop},
    entry_points={"console_scripts": [
        "vhsm = vhsm.cli.main:main",
        "PKCS11Manager = fxpkcs11.tools.pkcs11manager:main",
        "configTest = fxpkcs11.tools.configtest:main",
    ]},
)
