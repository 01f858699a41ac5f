"""The optional compiled per-frame kernel; everything else is in pyproject.toml.

``optional=True``: where no C compiler or Python headers are found, the install goes on
without the kernel and nirsd uses its numpy per-frame path (daemon/kernel.py).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "nirsd.daemon._lean",
            sources=["daemon/_lean.c"],
            # no fused multiply-add: the same rounding on every machine, and the general
            # and lean paths agree bit for bit (both call the same code)
            extra_compile_args=["-O2", "-ffp-contract=off", "-std=c11"],
            optional=True,
        )
    ]
)
