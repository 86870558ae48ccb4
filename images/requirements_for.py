"""Write the part of a hash lock that a given interpreter installs, for pip --target.

    requirements_for.py LOCK ENVIRONMENT_JSON > requirements.txt

pip evaluates a lock's environment markers for the Python running pip, not for --target's: the
build machine's Python 3.11.7 skips `async-timeout ; python_full_version < '3.11.3'`, which the
image's Python 3.11.2 needs. So images/build.sh asks the image's python3 for its marker values
(ENVIRONMENT_JSON) and this keeps exactly the entries whose markers hold there, hashes included.
"""

from __future__ import annotations

import json
import re
import sys

from packaging.requirements import Requirement

#: Run by the image's python3 (standard library only): the values PEP 508 markers read.
ENVIRONMENT_SCRIPT = """
import json, os, platform, sys
print(json.dumps({
    "implementation_name": sys.implementation.name,
    "implementation_version": platform.python_version(),
    "os_name": os.name,
    "platform_machine": platform.machine(),
    "platform_python_implementation": platform.python_implementation(),
    "platform_release": platform.release(),
    "platform_system": platform.system(),
    "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "python_version": ".".join(platform.python_version_tuple()[:2]),
    "sys_platform": sys.platform,
}))
"""


def select(lock_text: str, environment: dict[str, str]) -> str:
    kept = []
    for entry in re.split(r"\n(?=[A-Za-z0-9])", lock_text):
        first, _, rest = entry.partition("\n")
        if not first or first.startswith("#"):
            continue
        requirement = Requirement(first.rstrip(" \\"))
        if requirement.marker is None or requirement.marker.evaluate(environment):
            requirement.marker = None
            kept.append(f"{requirement} \\\n{rest}")
    return "\n".join(kept) + "\n"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--environment-script"]:
        print(ENVIRONMENT_SCRIPT)
    else:
        with open(sys.argv[1], encoding="utf-8") as lock, open(sys.argv[2], encoding="utf-8") as environment:
            sys.stdout.write(select(lock.read(), json.load(environment)))
