"""Macros for velesio's BUILD files, on top of the standard rules_python rules."""

load("@pypi//:requirements.bzl", "requirement")
load("@rules_python//python:defs.bzl", "py_binary", "py_test")

def console_script(name, entry_point, deps, **kwargs):
    """A py_binary that runs `module:function`, like a [project.scripts] entry of a pyproject.

    Args:
      name: the binary's name, e.g. the console script's (`velesio-api`).
      entry_point: `package.module:function`.
      deps: the py_library that holds the module.
      **kwargs: passed to py_binary.
    """
    module, function = entry_point.split(":")
    main = "_%s_main.py" % name.replace("-", "_")
    native.genrule(
        name = name + "_main",
        outs = [main],
        cmd = "printf 'from %s import %s\\n\\n%s()\\n' > $@" % (module, function, function),
    )
    py_binary(
        name = name,
        srcs = [main],
        main = main,
        deps = deps,
        **kwargs
    )

def pytest_files(name, srcs, deps = [], data = [], servers = False, **kwargs):
    """One py_test per pytest file, and a test_suite `name` of them all.

    Args:
      name: the test_suite's name.
      srcs: the test files (test_*.py).
      deps: what the tests import (pytest and //tests:support are added).
      data: files the tests read (pyproject.toml, pytest's configuration, is added).
      servers: the tests start servers (Redis, llama-server, the API) on 127.0.0.1 and spawn
        Python subprocesses, so they run outside Bazel's sandbox, and one at a time: several
        also measure concurrency inside one stack, which two stacks at once on two cores starve.
      **kwargs: passed to each py_test.
    """
    tags = kwargs.pop("tags", []) + (["no-sandbox", "exclusive"] if servers else [])
    tests = []
    for src in srcs:
        test = src[:-len(".py")]
        py_test(
            name = test,
            srcs = [src, "//tools/bazel_python:pytest_main.py"] + native.glob(["__init__.py"]),
            main = "//tools/bazel_python:pytest_main.py",
            args = ["$(location %s)" % src],
            data = data + ["//:pyproject.toml"],
            deps = deps + ["//tests:support", requirement("pytest")],
            tags = tags,
            **kwargs
        )
        tests.append(test)
    native.test_suite(name = name, tests = tests)
