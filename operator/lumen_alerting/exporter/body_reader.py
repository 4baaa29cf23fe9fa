"""``python -m lumen_alerting.exporter.body_reader``: read a probe's fields from a big body in a
process of its own (see ``probes.BodyReaders``), so the exporter's event loop never parses it.

Standard input: one line of JSON saying what to read (``BodyFields``), then the body's bytes.
Standard output: one line of JSON, the ``FieldReading``. It imports ``values`` (and through it
the ``json_paths`` leaf and the ``jsonpath`` library), not the ``policy`` package nor anything of
the service, so it starts in a tenth of a second (``tests/exporter/test_probes.py`` checks what
it loads); and the memory a big document takes goes back to the system when it exits.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from .values import BodyFields, FieldProblem, FieldReading, read_fields


def encode_request(body: bytes, wanted: BodyFields) -> bytes:
    header = {
        "gauges": dict(wanted.gauges),
        "value_maps": {name: dict(mapping) for name, mapping in wanted.value_maps.items()},
        "counted": dict(wanted.counted),
    }
    return json.dumps(header).encode() + b"\n" + body


def decode_request(data: bytes) -> tuple[bytes, BodyFields]:
    header, _, body = data.partition(b"\n")
    fields = json.loads(header)
    return body, BodyFields(fields["gauges"], fields["value_maps"], fields["counted"])


def encode_reading(reading: FieldReading) -> bytes:
    # Finite floats go through JSON exactly (repr round-trips); problems as their reasons.
    document = {
        "numbers": reading.numbers,
        "counted": reading.counted,
        "problems": {name: problem.value for name, problem in reading.problems.items()},
    }
    return json.dumps(document).encode()


def decode_reading(data: bytes) -> FieldReading:
    document: dict[str, Any] = json.loads(data)
    return FieldReading(
        numbers={name: float(value) for name, value in document["numbers"].items()},
        counted={name: str(value) for name, value in document["counted"].items()},
        problems={name: FieldProblem(reason) for name, reason in document["problems"].items()},
    )


def main() -> int:
    body, wanted = decode_request(sys.stdin.buffer.read())
    sys.stdout.buffer.write(encode_reading(read_fields(body, wanted)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
