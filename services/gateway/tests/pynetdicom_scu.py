"""A pynetdicom SCU for the gateway tests: C-ECHO, then C-STORE of each file given.

Usage: python pynetdicom_scu.py HOST PORT CALLED_AE FILE...

Proposes verification, the CR/DX storage SOP classes and CT Image Storage (which the gateway
must refuse), each file's SOP class in its own transfer syntax where that is not one of
pynetdicom's defaults (a compressed one), and prints one JSON object: whether the association was established, the
abstract syntaxes refused, the C-ECHO status and one C-STORE status per file.
"""

import json
import sys

from pydicom import dcmread
from pynetdicom import AE, DEFAULT_TRANSFER_SYNTAXES
from pynetdicom.sop_class import (
    CTImageStorage,
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    Verification,
)


def main() -> int:
    host, port, called = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    files = sys.argv[4:]
    ae = AE(ae_title="PYNETDICOM")
    ae.acse_timeout = 10
    ae.dimse_timeout = 20
    ae.network_timeout = 20
    for context in (
        Verification,
        ComputedRadiographyImageStorage,
        DigitalXRayImageStorageForPresentation,
        DigitalXRayImageStorageForProcessing,
        CTImageStorage,
    ):
        ae.add_requested_context(context)
    for path in files:
        ds = dcmread(path, stop_before_pixels=True)
        syntax = ds.file_meta.TransferSyntaxUID
        if syntax not in DEFAULT_TRANSFER_SYNTAXES:
            ae.add_requested_context(ds.SOPClassUID, [syntax])
    assoc = ae.associate(host, port, ae_title=called)
    out = {"established": assoc.is_established}
    if assoc.is_established:
        out["rejected"] = sorted(str(c.abstract_syntax) for c in assoc.rejected_contexts)
        status = assoc.send_c_echo()
        out["echo"] = int(status.Status) if status else None
        out["stores"] = []
        for path in files:
            status = assoc.send_c_store(dcmread(path))
            out["stores"].append(int(status.Status) if status else None)
        assoc.release()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
