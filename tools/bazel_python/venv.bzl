"""Bazel's Python, and the third-party packages, from velesio's hash-locked virtualenv.

Two repository rules, both re-run when VELESIO_VENV changes:

- `venv_python_toolchain` registers the venv's Python as Bazel's Python toolchain, with the
  venv's third-party packages but not its editable installs of the three velesio packages: those
  come from the runfiles, as the BUILD files say, so a first-party dependency missing from a
  BUILD file fails the test that needs it.
- `venv_requirements` is the offline twin of rules_python's `pip_parse(name = "pypi", ...)`: it
  reads the same lock file and gives `@pypi//:requirements.bzl` with `requirement(name)`, so the
  BUILD files are the same with either. Each locked package must be installed in the venv at its
  locked version (venv_packages.py checks; a venv not made from the lock fails here), and its
  target carries no files: the toolchain's PYTHONPATH provides them. So a third-party dependency missing from a BUILD file is
  not caught by this setup; with the real rules_python it is.

The venv is $VELESIO_VENV, or the workspace's .venv (what `make install` creates).
"""

def _venv(rctx):
    path = rctx.os.environ.get("VELESIO_VENV", "")
    if not path:
        path = str(rctx.path(Label("//:WORKSPACE")).dirname) + "/.venv"
    venv = rctx.path(path)
    if not venv.get_child("bin").get_child("python3").exists:
        fail("no Python virtualenv at %s: run `make install`, or set VELESIO_VENV to one made from requirements/lock/dev.txt" % path)
    return venv

def _describe(rctx, venv):
    """The venv's base interpreter, its site-packages and its lib/pythonX.Y directory name."""
    result = rctx.execute([
        str(venv.get_child("bin").get_child("python3")),
        "-c",
        "import sys, sysconfig; print(sys._base_executable); print(sysconfig.get_paths()['purelib']);" +
        "print('python%d.%d' % sys.version_info[:2])",
    ])
    if result.return_code != 0:
        fail("cannot run the venv's python3: " + result.stderr)
    return result.stdout.strip().splitlines()

_TOOLCHAIN_BUILD = """load("@bazel_tools//tools/python:toolchain.bzl", "py_runtime_pair")

py_runtime(
    name = "runtime",
    interpreter_path = "{python}",
    python_version = "PY3",
)

py_runtime_pair(
    name = "runtime_pair",
    py3_runtime = ":runtime",
)

toolchain(
    name = "toolchain",
    toolchain = ":runtime_pair",
    toolchain_type = "@bazel_tools//tools/python:toolchain_type",
)
"""

def _venv_python_toolchain_impl(rctx):
    base_python, site_packages, lib_name = _describe(rctx, _venv(rctx))

    # A second venv over the same base interpreter whose site-packages names the first one's in a
    # .pth line: that puts the directory on sys.path without reading the .pth files inside it,
    # which are the editable installs. Subprocesses started with sys.executable get the same view.
    rctx.symlink(base_python, "venv/bin/python3")
    rctx.file("venv/pyvenv.cfg", "home = %s\ninclude-system-site-packages = false\n" % rctx.path(base_python).dirname)
    rctx.file("venv/lib/%s/site-packages/velesio-third-party.pth" % lib_name, site_packages + "\n")
    rctx.file("BUILD.bazel", _TOOLCHAIN_BUILD.format(python = rctx.path("venv/bin/python3")))

venv_python_toolchain = repository_rule(
    implementation = _venv_python_toolchain_impl,
    environ = ["VELESIO_VENV"],
    local = True,
)

_REQUIREMENTS_BZL = '''"""Generated from {lock} by tools/bazel_python/venv.bzl: rules_python's interface."""

def requirement(name):
    return "@pypi//:" + name.lower().replace("_", "-").replace(".", "-")
'''

def _venv_requirements_impl(rctx):
    venv = _venv(rctx)
    result = rctx.execute([
        str(venv.get_child("bin").get_child("python3")),
        str(rctx.path(rctx.attr._checker)),
        str(rctx.path(rctx.attr.requirements_lock)),
    ])
    if result.return_code != 0:
        fail(result.stderr)
    names = result.stdout.strip().splitlines()[1:]
    targets = ['py_library(name = "%s", visibility = ["//visibility:public"])' % name for name in names]
    rctx.file("BUILD.bazel", "\n\n".join(targets) + "\n")
    rctx.file("requirements.bzl", _REQUIREMENTS_BZL.format(lock = rctx.attr.requirements_lock))

venv_requirements = repository_rule(
    implementation = _venv_requirements_impl,
    attrs = {
        "requirements_lock": attr.label(allow_single_file = True, mandatory = True),
        "_checker": attr.label(default = "//tools/bazel_python:venv_packages.py"),
    },
    environ = ["VELESIO_VENV"],
    local = True,
)
