"""Microsoft's ADF pipeline evaluator (data-factory-testing-framework), loaded once on Mono.

The framework evaluates expressions with ADF's own .NET expression engine through pythonnet.
It asks for CoreCLR, which Debian does not package; Mono runs the same assemblies, so Mono is
loaded first (pythonnet keeps the first runtime loaded). Without Mono the tests skip naming what
to install, except under CI=true, where a missing runtime fails the run: a CI that skipped them
would pass without ever evaluating a pipeline.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

INSTALL = (
    "Mono for Microsoft's ADF evaluator: `apt-get install mono-runtime mono-devel` (Debian/Ubuntu; "
    "`make test` does it when run as root), or any Mono >= 6.8 with libmonosgen-2.0.so on the loader path"
)


def _load() -> Any:
    try:
        import pythonnet

        with warnings.catch_warnings():
            # clr_loader warns about Mono < 6.12 (Debian 12 ships 6.8); the evaluator runs fine on it.
            warnings.simplefilter("ignore", UserWarning)
            pythonnet.load("mono")
        from data_factory_testing_framework import TestFramework, TestFrameworkType
        from data_factory_testing_framework.models import DataFactoryElement
        from data_factory_testing_framework.state import PipelineRunState

        _share_the_grammar()
        assert DataFactoryElement("@concat('a', 'b')").evaluate(PipelineRunState()) == "ab"
    except Exception as exc:  # no Mono, no libmonosgen, or the assemblies do not load
        message = f"ADF evaluator unavailable ({type(exc).__name__}: {exc}); install {INSTALL}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return TestFramework, TestFrameworkType


def _share_the_grammar() -> None:
    """The framework compiles its Lark grammar anew for every expression it evaluates, ~60% of these
    tests' time; the transformer holds nothing but the compiled parser, so one serves them all."""
    from data_factory_testing_framework._expression_runtime import expression_runtime

    make = getattr(expression_runtime, "DataFactoryTestingFrameworkExpressionsTransformer", None)
    if make is not None:
        one = make()
        expression_runtime.DataFactoryTestingFrameworkExpressionsTransformer = lambda: one  # type: ignore[assignment]


@pytest.fixture(scope="session")
def adf_framework() -> Callable[[Path], Any]:
    """A factory of TestFramework instances over an ADF Git folder (adf/, or a changed copy)."""
    test_framework, framework_type = _load()

    def framework(root: Path) -> Any:
        return test_framework(framework_type=framework_type.DataFactory, root_folder_path=str(root))

    return framework
