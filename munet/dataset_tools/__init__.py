"""Tools that make data: the synthetic demo dataset, its scanner-like DICOM files, the BUSI converter.

Used by ``scripts/`` and the tests, never by a workflow config: ``munet.data`` reads, checks and
transforms; this package writes. It is not imported by ``import munet``.

- ``ultrasound_simulator``: one synthetic B-mode case (tissue, lesion, speckle) as arrays;
- ``scanner_frame``: that case framed and written as a scanner-like ultrasound DICOM file;
- ``demo_dataset``: the demo dataset (images, masks, datalist.json);
- ``dicom_writer``: Ultrasound Image / mask DICOM files written with pydicom;
- ``busi``: the BUSI dataset to a datalist.
"""
