"""The LICENSE file at the repository root is the license operator/pyproject.toml declares,
word for word: the canonical text of that SPDX license (for Apache-2.0, the text of
https://www.apache.org/licenses/LICENSE-2.0.txt, as Debian ships it in
/usr/share/common-licenses/Apache-2.0)."""

from __future__ import annotations

import hashlib
import tomllib

from tests.support.schemas import REPO

# SPDX id -> (the lines that name it at the top of its text, sha256 of the canonical text).
LICENSES = {
    "Apache-2.0": (
        ("Apache License", "Version 2.0, January 2004", "http://www.apache.org/licenses/"),
        "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30",
    ),
}


def declared_license() -> str:
    project = tomllib.loads((REPO / "operator" / "pyproject.toml").read_text())["project"]
    license_ = project["license"]
    return str(license_["text"] if isinstance(license_, dict) else license_)


def test_the_declared_license_is_one_this_test_knows():
    assert declared_license() in LICENSES, (
        f"pyproject declares {declared_license()!r}: add its canonical text to LICENSE and here"
    )


def test_the_license_file_is_the_declared_license_word_for_word():
    heading, digest = LICENSES[declared_license()]
    text = (REPO / "LICENSE").read_bytes()
    assert [line.strip() for line in text.decode().strip().splitlines()[:3]] == list(heading)
    assert hashlib.sha256(text).hexdigest() == digest, "LICENSE differs from the canonical text"
