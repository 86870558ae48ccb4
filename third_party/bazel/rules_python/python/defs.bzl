"""The subset of rules_python's python/defs.bzl that velesio uses, as Bazel 4's native rules."""

def py_library(**attrs):
    native.py_library(**attrs)  # buildifier: disable=native-py

def py_binary(**attrs):
    native.py_binary(**attrs)  # buildifier: disable=native-py

def py_test(**attrs):
    native.py_test(**attrs)  # buildifier: disable=native-py
